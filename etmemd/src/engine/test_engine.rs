//! A test-only engine that monitors nothing: it records which tasks run so
//! the registry's lifecycle can be tested end to end through the real
//! daemon (`etmemd --test-engine`). Never used for real work.

use super::{Engine, EngineEnv, EngineError, EngineFactory};
use crate::protocol::TaskStats;
use damon_core::Snapshot;
use std::collections::BTreeMap;

/// Serves every engine kind with [`TestEngine`].
#[derive(Debug, Default)]
pub struct TestEngines;

impl EngineFactory for TestEngines {
    fn create(
        &self,
        _project: &conf::Project,
        engine: &conf::Engine,
        _env: &EngineEnv,
    ) -> Result<Box<dyn Engine>, EngineError> {
        Ok(Box::new(TestEngine { name: engine.name.clone(), tasks: BTreeMap::new() }))
    }
}

/// Counts starts per task; `etmem engine tasks` lists the running ones.
#[derive(Debug)]
pub struct TestEngine {
    name: String,
    tasks: BTreeMap<String, u64>,
}

impl Engine for TestEngine {
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError> {
        if task.name.starts_with("fail") {
            return Err(EngineError::Task {
                task: task.name.clone(),
                reason: "refused by the test engine".into(),
            });
        }
        *self.tasks.entry(task.name.clone()).or_default() += 1;
        Ok(())
    }

    fn stop_task(&mut self, task: &str) {
        self.tasks.remove(task);
    }

    fn task_stats(&self, task: &str) -> Option<TaskStats> {
        let starts = self.tasks.get(task)?;
        let mut stats = TaskStats::default();
        stats.extra.insert("test_starts".into(), starts.to_string());
        Some(stats)
    }

    fn snapshots(&self, _task: &str) -> Vec<(u32, Snapshot)> {
        Vec::new()
    }

    fn command(&mut self, cmd: &str, _task: Option<&str>) -> Result<String, EngineError> {
        match cmd {
            "tasks" => Ok(self.tasks.keys().map(|t| format!("{t}\n")).collect()),
            _ => Err(EngineError::UnknownCommand {
                engine: self.name.clone(),
                cmd: cmd.into(),
                known: "tasks".into(),
            }),
        }
    }

    fn stop(&mut self) {
        self.tasks.clear();
    }
}
