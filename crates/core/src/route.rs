//! Per-query routing between the fast path (answer from the relevant parts of `c'` on a low
//! budget) and the full-reasoning fallback (when the question matches nothing in `c'`).

use serde::{Deserialize, Serialize};

use crate::LearnedDocument;

/// Settings for [`route`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Most quantities passed to the answerer.
    pub top_n: usize,
    /// Lowest retrieval score (share of the question's content words found in the best
    /// quantity) for the fast path.
    pub min_confidence: f64,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            top_n: 8,
            min_confidence: 0.2,
        }
    }
}

/// Which path a query takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "path", rename_all = "snake_case")]
pub enum Route {
    /// Answer from `text` (the selected parts of `c'`).
    Fast { text: String, confidence: f64 },
    /// Nothing in `c'` matches well enough: reason from the context.
    Fallback { confidence: f64 },
}

impl Route {
    pub fn confidence(&self) -> f64 {
        match self {
            Route::Fast { confidence, .. } | Route::Fallback { confidence } => *confidence,
        }
    }
    pub fn is_fast(&self) -> bool {
        matches!(self, Route::Fast { .. })
    }
}

/// Pick the parts of `doc` relevant to `question`, or decide to fall back.
pub fn route(doc: &LearnedDocument, question: &str, config: &RouteConfig) -> Route {
    let ranked = doc.rank(question);
    let confidence = ranked.first().map_or(0.0, |r| r.1);
    if confidence < config.min_confidence || ranked.is_empty() {
        return Route::Fallback { confidence };
    }
    // The best matches, plus every given quantity: a question often adds a condition that
    // must be combined with the situation's own numbers.
    let mut picked: Vec<usize> = ranked
        .iter()
        .take(config.top_n)
        .filter(|r| r.1 > 0.0)
        .map(|r| r.0)
        .collect();
    for (i, q) in doc.quantities.iter().enumerate() {
        if q.given && !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    Route::Fast {
        text: doc.render_parts(&picked, true),
        confidence,
    }
}
