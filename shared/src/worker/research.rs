//! A queued research (`TaskKind::Research`, always queued): the research
//! flow (`research::run`) under the task's claim, as a multi-agent run is.

use super::{Disposition, StillHeld, Worker};
use crate::multi::Spent;
use crate::research::{self, EarlierResearch, ResearchEvent, ResearchInput, ResearchRun};
use crate::store::TaskRecord;

impl Worker {
    pub(super) async fn run_research(&self, task: TaskRecord) -> Disposition {
        let input = task
            .input
            .clone()
            .and_then(|input| serde_json::from_value::<ResearchInput>(input).ok());
        let Some(input) = input.filter(|i| (1..=research::MAX_SUBTOPICS_CAP).contains(&i.max_subtopics)) else {
            return self
                .fail(&task, "the stored research cannot be read; submit it again", None)
                .await;
        };
        let roles = match self.roles_for(&task) {
            Ok(roles) => roles,
            Err(refused) => return self.fail(&task, &refused, None).await,
        };
        let run = ResearchRun {
            topic: task.task.clone(),
            session_key: crate::owned::session_key(&task.owner, &task.session_id),
            depth: input.depth,
            max_subtopics: input.max_subtopics,
            concurrency: crate::multi::CONCURRENCY,
            earlier: self.earlier_research(&task).await,
        };
        let spent = Spent::default();
        let held = StillHeld {
            tasks: self.tasks.as_ref(),
            task_id: &task.task_id,
            attempt: task.attempts,
        };
        let (spent_ref, roles, tools) = (&spent, &roles, &self.tools);
        self.run_orchestrated(&task, &spent, |events| async move {
            let on_event = move |event: serde_json::Value| {
                let _ = events.send(event);
            };
            research::run(roles, tools, &run, spent_ref, Some(&held), &on_event).await
        })
        .await
    }

    /// What earlier attempts of `task` left (its `subtopics` and
    /// `subtopic_finished` events), as for a multi-agent run.
    async fn earlier_research(&self, task: &TaskRecord) -> Option<EarlierResearch> {
        let mut earlier = EarlierResearch::default();
        for event in self.earlier_as::<ResearchEvent>(task).await? {
            match event {
                ResearchEvent::Subtopics { subtopics, origin } => earlier.planned = Some((subtopics, origin)),
                ResearchEvent::SubtopicFinished(result) => earlier.done.push(*result),
                _ => {}
            }
        }
        Some(earlier)
    }
}
