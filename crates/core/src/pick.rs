//! Which of `c'`'s quantities answers a question: the features an engine-side choice rests
//! on, computed from the documents alone (no model call). The benchmark records them with
//! every answer, as numbers, so that choices can be compared on recorded runs.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{parse, LearnedDocument};

/// One quantity of a learned document, seen from a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The quantity's exact value, as a float.
    pub value: f64,
    /// Stated in the context rather than derived.
    pub given: bool,
    /// Lexical match with the question: the share of its content words the quantity's name,
    /// description and anticipated questions hold ([`LearnedDocument::rank`]).
    pub score: f64,
    /// Drafts whose documents hold this value (1 when `c'` came from one draft).
    pub support: u32,
    /// Other quantities whose expressions use this one; 0 marks a result nothing builds on.
    pub used_by: u32,
    /// An anticipated question is answered by it.
    pub anticipated: bool,
}

/// The candidates of `doc` for `question`, in the document's order. `drafts` are the
/// documents `doc` was merged from (empty or one for a single draft).
pub fn candidates(
    doc: &LearnedDocument,
    drafts: &[&LearnedDocument],
    question: &str,
) -> Vec<Candidate> {
    let mut scores = vec![0.0; doc.quantities.len()];
    for (i, score) in doc.rank(question) {
        scores[i] = score;
    }
    let uses: Vec<HashSet<&str>> = doc
        .quantities
        .iter()
        .map(|q| identifiers(&q.expression))
        .collect();
    doc.quantities
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let used_by = uses
                .iter()
                .enumerate()
                .filter(|(j, names)| *j != i && names.contains(q.name.as_str()))
                .count();
            let support = if drafts.len() <= 1 {
                1
            } else {
                drafts
                    .iter()
                    .filter(|d| {
                        d.values()
                            .iter()
                            .any(|v| parse::numbers_match(*v, q.number))
                    })
                    .count()
            };
            Candidate {
                value: q.number,
                given: q.given,
                score: scores[i],
                support: u32::try_from(support).unwrap_or(u32::MAX),
                used_by: u32::try_from(used_by).unwrap_or(u32::MAX),
                anticipated: doc.questions.iter().any(|aq| aq.quantity == q.name),
            }
        })
        .collect()
}

/// How the engine settles the answer among `c'`'s quantities after the model has replied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PickRule {
    /// Keep the model's answer when `c'` holds it; otherwise take the best match.
    BackedFirst,
    /// Take the best match unless the model's answer is among the equally good matches.
    MatchFirst,
}

/// The answer under `rule`: the model's, or the value of the derived quantity that best
/// matches the question (highest lexical score; ties go to results nothing builds on, then
/// to more drafts' support, then to later quantities). Without any derived quantity that
/// shares a word with the question, the model's answer stands.
pub fn choose(candidates: &[Candidate], model_answer: Option<f64>, rule: PickRule) -> Option<f64> {
    let matching = |value: f64| model_answer.is_some_and(|a| parse::numbers_match(a, value));
    let derived = || candidates.iter().filter(|c| !c.given && c.score > 0.0);
    let Some(top) = derived().map(|c| c.score).max_by(f64::total_cmp) else {
        return model_answer;
    };
    let keep_model = match rule {
        PickRule::BackedFirst => candidates.iter().any(|c| matching(c.value)),
        PickRule::MatchFirst => derived().any(|c| c.score == top && matching(c.value)),
    };
    if keep_model {
        return model_answer;
    }
    derived()
        .enumerate()
        .filter(|(_, c)| c.score == top)
        .max_by_key(|(i, c)| (c.used_by == 0, c.support, *i))
        .map(|(_, c)| c.value)
}

/// The names an expression mentions (anything shaped like an identifier).
fn identifiers(expression: &str) -> HashSet<&str> {
    expression
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_alphabetic() || c == '_'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AnticipatedQuestion, Quantity};

    fn quantity(name: &str, description: &str, expression: &str, number: f64) -> Quantity {
        Quantity {
            name: name.into(),
            description: description.into(),
            expression: expression.into(),
            value: number.to_string(),
            number,
            given: expression.parse::<f64>().is_ok(),
        }
    }

    fn bakery() -> LearnedDocument {
        LearnedDocument {
            quantities: vec![
                quantity("trays", "trays baked a day", "6", 6.0),
                quantity("per_tray", "muffins on a tray", "12", 12.0),
                quantity(
                    "daily_muffins",
                    "muffins baked a day",
                    "trays * per_tray",
                    72.0,
                ),
                quantity(
                    "weekly_muffins",
                    "muffins baked in a week",
                    "daily_muffins * 7",
                    504.0,
                ),
            ],
            questions: vec![AnticipatedQuestion {
                question: "How many muffins a week?".into(),
                quantity: "weekly_muffins".into(),
                answer: "504".into(),
                solved: false,
            }],
            ..LearnedDocument::default()
        }
    }

    #[test]
    fn features_follow_the_document_and_the_question() {
        let doc = bakery();
        let c = candidates(&doc, &[], "How many muffins does Lena bake in a week?");
        let values: Vec<f64> = c.iter().map(|c| c.value).collect();
        assert_eq!(values, [6.0, 12.0, 72.0, 504.0]);
        assert_eq!(
            c.iter().map(|c| c.used_by).collect::<Vec<_>>(),
            [1, 1, 1, 0]
        );
        assert_eq!(
            c.iter().map(|c| c.given).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert_eq!(
            c.iter().map(|c| c.anticipated).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert!(c.iter().all(|c| c.support == 1));
        // "week" and "muffin" both match the weekly total; the trays match neither.
        let best = c
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .map(|(i, _)| i);
        assert_eq!(best, Some(3));
        assert_eq!(c[0].score, 0.0);
    }

    #[test]
    fn support_counts_the_drafts_holding_a_value() {
        let merged = bakery();
        let mut other = bakery();
        other.quantities.truncate(3);
        let drafts = [&merged, &other, &other];
        let c = candidates(&merged, &drafts, "How many muffins a day?");
        assert_eq!(
            c.iter().map(|c| c.support).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
    }

    fn candidate(value: f64, given: bool, score: f64, used_by: u32, support: u32) -> Candidate {
        Candidate {
            value,
            given,
            score,
            support,
            used_by,
            anticipated: false,
        }
    }

    #[test]
    fn backed_answers_stand_and_unbacked_ones_give_way_to_the_best_match() {
        let c = [
            candidate(6.0, true, 0.9, 1, 1),
            candidate(72.0, false, 0.5, 1, 1),
            candidate(504.0, false, 0.5, 0, 1),
            candidate(20.0, false, 0.2, 0, 1),
        ];
        // The model's 72 is held by c': kept under BackedFirst, even though 504 ties on score
        // and builds on nothing.
        assert_eq!(choose(&c, Some(72.0), PickRule::BackedFirst), Some(72.0));
        // 72 is among the best matches, so MatchFirst keeps it too.
        assert_eq!(choose(&c, Some(72.0), PickRule::MatchFirst), Some(72.0));
        // 20 is held but matches worse: MatchFirst takes the best match, the final 504; a
        // given number (6) never wins, however well it matches.
        assert_eq!(choose(&c, Some(20.0), PickRule::BackedFirst), Some(20.0));
        assert_eq!(choose(&c, Some(20.0), PickRule::MatchFirst), Some(504.0));
        // An answer c' does not hold, or none at all, gives way under both rules.
        for rule in [PickRule::BackedFirst, PickRule::MatchFirst] {
            assert_eq!(choose(&c, Some(7.0), rule), Some(504.0));
            assert_eq!(choose(&c, None, rule), Some(504.0));
        }
    }

    #[test]
    fn ties_go_to_support_then_to_later_quantities() {
        let c = [
            candidate(10.0, false, 0.5, 0, 1),
            candidate(11.0, false, 0.5, 0, 3),
            candidate(12.0, false, 0.5, 0, 3),
        ];
        assert_eq!(choose(&c, None, PickRule::MatchFirst), Some(12.0));
        let c = [candidate(10.0, false, 0.5, 0, 4), c[1].clone()];
        assert_eq!(choose(&c, None, PickRule::MatchFirst), Some(10.0));
    }

    #[test]
    fn without_a_matching_derived_quantity_the_model_answer_stands() {
        let c = [
            candidate(6.0, true, 0.9, 1, 1),
            candidate(72.0, false, 0.0, 0, 1),
        ];
        for rule in [PickRule::BackedFirst, PickRule::MatchFirst] {
            assert_eq!(choose(&c, Some(7.0), rule), Some(7.0));
            assert_eq!(choose(&[], None, rule), None);
        }
    }

    #[test]
    fn an_empty_document_has_no_candidates() {
        assert!(candidates(&LearnedDocument::default(), &[], "How many?").is_empty());
    }
}
