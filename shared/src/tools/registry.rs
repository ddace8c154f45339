//! The agent's tools, built from the settings once at start-up.

use std::sync::Arc;

use super::{Registry, Tool, calculator, memory, remote, search};

/// The search index the settings ask for: `SEARCH_CORPUS`, else the
/// documentation built into the binary. Fails (at start-up) on a corpus
/// that cannot be read, rather than serving empty searches.
pub fn search_index(settings: &crate::config::ToolSettings) -> anyhow::Result<Arc<search::SearchIndex>> {
    let index = match &settings.search_corpus {
        Some(dir) => search::SearchIndex::from_dir(dir)?,
        None => search::SearchIndex::builtin(),
    };
    Ok(Arc::new(index))
}

/// The agent's tools as the settings ask: calculator and search in process,
/// or the remote functions at `CALCULATOR_URL` and `SEARCH_URL`; memory in
/// the store.
pub fn registry(settings: &crate::config::ToolSettings, stores: &crate::store::Stores) -> anyhow::Result<Registry> {
    let needs_http = settings.search_url.is_some() || settings.calculator_url.is_some();
    let http = if needs_http {
        Some(crate::llm::http_client(settings.timeout)?)
    } else {
        None
    };
    let remote = |local: Arc<dyn Tool>, url: &Option<String>| -> Arc<dyn Tool> {
        match (url, &http) {
            (Some(url), Some(http)) => {
                let id_tokens = settings
                    .id_tokens
                    .then(|| crate::gcp::MetadataClient::from_env(http.clone()));
                Arc::new(remote::RemoteTool::new(
                    local.spec().clone(),
                    url,
                    http.clone(),
                    id_tokens,
                    settings.api_key.clone(),
                    settings.timeout,
                ))
            }
            _ => local,
        }
    };
    let search: Arc<dyn Tool> = match settings.search_url {
        // The remote function holds the corpus; only the declaration is needed here.
        Some(_) => Arc::new(search::Search::new(Arc::new(search::SearchIndex::from_documents(
            Vec::new(),
        )))),
        None => Arc::new(search::Search::new(search_index(settings)?)),
    };
    Ok(Registry::new()
        .with(remote(
            Arc::new(calculator::Calculator::new()),
            &settings.calculator_url,
        ))
        .with(remote(search, &settings.search_url))
        .with(Arc::new(memory::StoreMemory::new(stores.memory.clone())))
        .with(Arc::new(memory::RecallMemory::new(stores.memory.clone()))))
}
