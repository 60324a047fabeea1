//! The response cache: in memory, with an optional JSON-lines file.
//!
//! Keys are hashes of (model, prompt hash, normalized text), so the file
//! holds no item text.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use unicode_normalization::UnicodeNormalization;

use super::error::LlmConfigError;
use super::prompt::hash_fields;
use crate::classify::Prediction;

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    prediction: Prediction,
}

pub(crate) struct Cache {
    capacity: usize,
    map: Mutex<(HashMap<String, Prediction>, VecDeque<String>)>,
    file: Option<(PathBuf, tokio::sync::Mutex<Option<tokio::fs::File>>)>,
}

/// NFKC, lower case, white space runs as one space, trimmed.
pub(crate) fn normalize(text: &str) -> String {
    let nfkc: String = text.nfkc().collect::<String>().to_lowercase();
    nfkc.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn key(model: &str, prompt_hash: &str, text: &str) -> String {
    let n = normalize(text);
    hash_fields(&[model.as_bytes(), prompt_hash.as_bytes(), n.as_bytes()])
}

impl Cache {
    pub(crate) fn new(capacity: usize, file: Option<&Path>) -> Result<Cache, LlmConfigError> {
        let cache = Cache {
            capacity,
            map: Mutex::new((HashMap::new(), VecDeque::new())),
            file: file.map(|p| (p.to_owned(), tokio::sync::Mutex::new(None))),
        };
        if let Some(path) = file {
            let bad = |problem: String| LlmConfigError::CacheFile {
                path: path.display().to_string(),
                problem,
            };
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let lines: Vec<&str> = text.lines().collect();
                    for (i, line) in lines.iter().enumerate() {
                        if line.trim().is_empty() {
                            continue;
                        }
                        match serde_json::from_str::<Line>(line) {
                            Ok(l) => cache.insert(l.key, l.prediction),
                            // A last line cut short by a crash mid-write.
                            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                            Err(e) => {
                                return Err(bad(format!(
                                    "line {} is not a cache entry ({e}); delete the file to start afresh",
                                    i + 1
                                )));
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        Ok(cache)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().0.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<String, Prediction>, VecDeque<String>)> {
        // Plain maps: a panic mid-update leaves them usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Prediction> {
        self.lock().0.get(key).cloned()
    }

    fn insert(&self, key: String, p: Prediction) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.lock();
        let (map, order) = &mut *g;
        if map.insert(key.clone(), p).is_none() {
            order.push_back(key);
            while map.len() > self.capacity {
                match order.pop_front() {
                    Some(old) => {
                        map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    /// Remembers an answer, and appends it to the file. A failed write is
    /// logged (with the path only) and the answer still returned.
    pub(crate) async fn put(&self, key: String, p: Prediction) {
        self.insert(key.clone(), p.clone());
        let Some((path, file)) = &self.file else {
            return;
        };
        let line = match serde_json::to_string(&Line { key, prediction: p }) {
            Ok(mut l) => {
                l.push('\n');
                l
            }
            Err(_) => return,
        };
        let mut guard = file.lock().await;
        if guard.is_none() {
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
            {
                Ok(f) => *guard = Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "llm cache file could not be opened");
                    return;
                }
            }
        }
        if let Some(f) = guard.as_mut() {
            let written = async {
                f.write_all(line.as_bytes()).await?;
                f.flush().await
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "llm cache file write failed");
            }
        }
    }
}
