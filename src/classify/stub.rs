// TEMPORARY: replaced by the real classifier on merge.
use super::*;
use std::sync::Arc;
pub struct ClassifierOptions {
    pub cache_capacity: usize,
    pub max_parse_bytes: usize,
}
impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions {
            cache_capacity: 10_000,
            max_parse_bytes: 65_536,
        }
    }
}
pub struct Classifier;
impl Classifier {
    pub fn new(_d: Dialect, _o: ClassifierOptions) -> Self {
        Classifier
    }
    pub fn classify(&self, sql: &str) -> Arc<Analysis> {
        let up = sql.trim().to_ascii_uppercase();
        if up.is_empty() {
            return Arc::new(Analysis { statements: vec![] });
        }
        let c = if up.starts_with("SELECT") {
            Class::Read
        } else if up.starts_with("DROP") {
            Class::Ddl
        } else {
            Class::Write
        };
        Arc::new(Analysis {
            statements: vec![StatementInfo {
                classes: ClassSet::of(&[c]),
                tables: vec![],
                fingerprint: "?".into(),
                command: "X".into(),
                forbidden: None,
                note: None,
            }],
        })
    }
    pub fn cache_stats(&self) -> (u64, u64) {
        (0, 0)
    }
}
