//! placeholder: being written
use crate::config::LlmSettings;
pub struct OpenAiModel;
impl OpenAiModel {
    pub fn new(_: &LlmSettings, _: reqwest::Client) -> anyhow::Result<crate::llm::offline::OfflineModel> { anyhow::bail!("not yet") }
}
