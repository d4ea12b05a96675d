//! A structured learned context: facts, exactly computed quantities, anticipated questions
//! and notes, stored so that parts can be selected at test time.

use serde::{Deserialize, Serialize};

/// A named quantity whose value the engine computed, never the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    pub name: String,
    /// Plain-English meaning, from the model's comment.
    pub description: String,
    /// The expression as the model wrote it.
    pub expression: String,
    /// The exact value, rendered (`420`, `2.5`, `0.333333`).
    pub value: String,
    /// The value as a float, for comparisons.
    pub number: f64,
    /// True for numbers stated in the context; false for derived ones.
    pub given: bool,
}

/// A question the sleep program expects, answered by one of the quantities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnticipatedQuestion {
    pub question: String,
    /// The quantity holding the answer.
    pub quantity: String,
    pub answer: String,
    /// Predicted and solved by step-by-step reasoning at sleep time (its arithmetic redone
    /// by the engine), rather than only named by the program.
    #[serde(default)]
    pub solved: bool,
}

/// A question expected with numbers of its own left open: sleep time wrote its steps as
/// expressions over named inputs and checked them on probe values; test time binds the
/// inputs to the question's numbers and the engine evaluates the steps (see `open.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenQuestion {
    /// The question with each input written `{name}`.
    pub question: String,
    /// The inputs, with the example values the steps were checked on.
    pub inputs: Vec<Quantity>,
    /// The steps in order (values for the example inputs); the last is the answer.
    pub steps: Vec<Quantity>,
}

impl OpenQuestion {
    /// The quantity holding the answer.
    pub fn answer(&self) -> Option<&Quantity> {
        self.steps.last()
    }
}

/// The typed form of `c'`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnedDocument {
    pub quantities: Vec<Quantity>,
    pub questions: Vec<AnticipatedQuestion>,
    pub notes: Vec<String>,
    /// Questions with open inputs (absent in documents written before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_questions: Vec<OpenQuestion>,
}

impl LearnedDocument {
    /// Text for any model: every part.
    pub fn render(&self) -> String {
        let all: Vec<usize> = (0..self.quantities.len()).collect();
        self.render_parts(&all, true)
    }

    /// Text holding only the given quantities (by index), and the questions resting on them.
    pub fn render_parts(&self, quantity_indices: &[usize], with_questions: bool) -> String {
        let mut out = String::new();
        if !quantity_indices.is_empty() {
            out.push_str(
                "Quantities (every value computed exactly by a calculator; trust them):\n",
            );
            for &i in quantity_indices {
                let Some(q) = self.quantities.get(i) else {
                    continue;
                };
                let formula = if q.given || q.expression.trim() == q.value {
                    String::new()
                } else {
                    format!(" = {}", q.expression)
                };
                let about = if q.description.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", q.description)
                };
                out.push_str(&format!("- {}{formula} = {}{about}\n", q.name, q.value));
            }
        }
        let selected: std::collections::HashSet<&str> = quantity_indices
            .iter()
            .filter_map(|&i| self.quantities.get(i))
            .map(|q| q.name.as_str())
            .collect();
        let questions: Vec<&AnticipatedQuestion> = self
            .questions
            .iter()
            .filter(|q| with_questions && selected.contains(q.quantity.as_str()))
            .collect();
        if !questions.is_empty() {
            out.push_str("Anticipated questions:\n");
            for q in questions {
                out.push_str(&format!(
                    "- {} Answer: {} ({})\n",
                    q.question, q.answer, q.quantity
                ));
            }
        }
        if with_questions && !self.open_questions.is_empty() {
            out.push_str("Questions with open numbers (to answer one, write its input lines with the question's numbers, then its answer line):\n");
            for open in &self.open_questions {
                let Some(answer) = open.answer() else {
                    continue;
                };
                out.push_str(&format!("- {}\n", open.question));
                for input in &open.inputs {
                    out.push_str(&format!("  {} = <number>\n", input.name));
                }
                out.push_str(&format!("  answer = {}\n", answer.name));
            }
        }
        if !self.notes.is_empty() {
            out.push_str("Notes:\n");
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out.trim_end().to_owned()
    }

    /// Quantity indices ranked by lexical overlap with `question`, with their scores.
    /// Names count by their parts (`weekday_muffins` -> weekday, muffins).
    pub fn rank(&self, question: &str) -> Vec<(usize, f64)> {
        let q_words = words(question);
        let mut scored: Vec<(usize, f64)> = self
            .quantities
            .iter()
            .enumerate()
            .map(|(i, quantity)| {
                let mut doc = words(&quantity.name.replace('_', " "));
                doc.extend(words(&quantity.description));
                for aq in self
                    .questions
                    .iter()
                    .filter(|aq| aq.quantity == quantity.name)
                {
                    doc.extend(words(&aq.question));
                }
                let hits = q_words.iter().filter(|w| doc.contains(*w)).count();
                (i, hits as f64 / (q_words.len().max(1) as f64))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }

    /// Every computed value, for answer recall.
    pub fn values(&self) -> Vec<f64> {
        self.quantities.iter().map(|q| q.number).collect()
    }
}

const STOP: &[&str] = &[
    "the", "a", "an", "of", "to", "in", "on", "for", "and", "or", "is", "are", "was", "were", "be",
    "does", "do", "did", "how", "many", "much", "what", "which", "if", "it", "its", "he", "she",
    "they", "his", "her", "their", "at", "by", "with", "from", "this", "that", "will", "would",
    "has", "have", "had", "per", "each", "all", "total", "number",
];

fn words(text: &str) -> std::collections::HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .map(|w| w.to_lowercase())
        .map(|w| {
            w.strip_suffix('s')
                .filter(|s| s.len() > 2)
                .map(str::to_owned)
                .unwrap_or(w)
        })
        .filter(|w| w.len() > 1 && !STOP.contains(&w.as_str()))
        .collect()
}
