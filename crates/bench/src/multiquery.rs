//! Multi-Query GSM-Symbolic (paper §2.3, Fig. 19): more questions about each context, so
//! that one sleep-time run is shared by several queries and its cost amortised.
//!
//! For each context a generator model writes question/answer pairs in the original's style
//! (same situation, same difficulty, same number of steps, reasoning then `#### N`). As in
//! the paper, its prompt holds the GSM-Symbolic template (when the problem has one), the
//! instantiation and the original question with its worked answer. A pair is kept only
//! when an independent solve agrees: the majority of several full-reasoning samples at
//! temperature > 0 must give its answer. The original question is always kept.
//!
//! The generated text is derived from GSM-Symbolic (CC BY-NC-ND 4.0), so it is stored only
//! under the (gitignored) cache folder; the run folder gets ids, counts and provenance.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sleeptime_core::{parse, AnswerConfig, AnswerInput, Answerer, BudgetForcing, Verbosity};
use sleeptime_model::{ChatRequest, Message, ModelBackend};

use crate::datasets::{parse_gsm_answer, Problem};
use crate::spec::{Budget, MultiQuerySpec};

/// Bumped when the generation prompt or parsing changes; part of the cache key, so sets
/// generated with an older prompt are not reused. 2: the prompt quotes the GSM-Symbolic
/// template when the problem has one. 3: `#### N` lines that count the pairs are read as
/// numbering, and near-duplicate questions are dropped. 4: two such lines are enough (a
/// reply whose other pairs lack a mark was read as answered `#### 11`, `#### 12`).
pub const GENERATION_VERSION: u32 = 4;

/// The label of the template block in the generation prompt.
pub const TEMPLATE_LABEL: &str = "Template of the situation (names and numbers vary):";

/// The generation prompt (our wording of the paper's Fig. 19).
pub fn generation_system(n: usize) -> String {
    format!(
        "You write new questions about a math word problem for a test. You are given a situation, sometimes with the \
template it was made from, and one example question about it with a worked answer. Write {n} new questions about \
the same situation, with its own names and numbers. Each must be answerable from the situation alone, be as hard as \
the example and need about the same number of reasoning steps. Answer each one the way the example is answered: \
short reasoning with arithmetic, then a last line of the form #### <number>. \
Do not number the questions. Write every pair exactly in this format:\n\
Q: <question>\nA: <reasoning>\n#### <number>"
    )
}

/// The user message of a generation request: the problem's template when it has one (see
/// [`Problem::template`]), the situation (the instantiation's context), and the original
/// question with its worked answer as the example.
pub fn generation_user(problem: &Problem) -> String {
    let example = problem
        .solution
        .clone()
        .unwrap_or_else(|| format!("#### {}", problem.answer_text));
    let template = problem
        .template
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| format!("{TEMPLATE_LABEL}\n{t}\n\n"))
        .unwrap_or_default();
    format!(
        "{template}Situation: {}\n\nExample question: {}\nExample answer:\n{}",
        problem.context.trim(),
        problem.question.trim(),
        example.trim()
    )
}

/// Question/answer pairs in a generator reply; malformed pairs are dropped. Tolerates
/// numbering, bullets and bold markers around `Q:` / `A:`.
pub fn parse_pairs(text: &str) -> Vec<(String, f64)> {
    let strip = |l: &str| -> String {
        l.trim_start_matches(|c: char| {
            c.is_ascii_digit() || matches!(c, '.' | ')' | '*' | '-' | ' ')
        })
        .replacen("**", "", 2)
    };
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let raw = line.trim();
        let marked = strip(raw);
        if let Some(q) = marked
            .strip_prefix("Q:")
            .or_else(|| marked.strip_prefix("Question:"))
        {
            blocks.push((q.trim().to_owned(), String::new()));
        } else if let Some((q, a)) = blocks.last_mut() {
            if let Some(rest) = marked
                .strip_prefix("A:")
                .or_else(|| marked.strip_prefix("Answer:"))
            {
                a.push_str(rest.trim());
                a.push('\n');
            } else if a.is_empty() {
                // The question went on over several lines.
                q.push(' ');
                q.push_str(raw);
            } else {
                a.push_str(raw);
                a.push('\n');
            }
        }
    }
    // Each pair's `####` mark and the number its own text ends on (before the mark).
    let parsed: Vec<(String, f64, Option<f64>)> = blocks
        .into_iter()
        .filter_map(|(question, answer)| {
            let question = question
                .trim_matches(|c: char| c == '*' || c.is_whitespace())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let gsm = parse_gsm_answer(&answer).ok()?;
            Some((question, gsm.value, parse::final_number(&gsm.reasoning)))
        })
        .collect();
    let numbering = marks_count_the_pairs(&parsed);
    let mut out: Vec<(String, f64)> = Vec::new();
    for (question, marked, stated) in parsed {
        let value = if numbering {
            match stated {
                Some(v) => v,
                None => continue,
            }
        } else {
            marked
        };
        if question.len() < 8 || out.iter().any(|(q, _)| near_duplicate(q, &question)) {
            continue;
        }
        out.push((question, value));
    }
    out
}

/// Whether a reply's `#### N` lines number its pairs rather than answer them: a small
/// generator writes `#### 11`, `#### 12`, `#### 13`, … under answers stated in the text
/// ("A: 156 inches."). Read so when the marks are consecutive integers (two or more) and
/// most of those pairs' texts end on another number — with two pairs, both. Pairs are
/// `(question, mark, stated)`.
fn marks_count_the_pairs(pairs: &[(String, f64, Option<f64>)]) -> bool {
    if pairs.len() < 2 {
        return false;
    }
    let counting = pairs.windows(2).all(|w| {
        let (a, b) = (w[0].1, w[1].1);
        a.fract() == 0.0 && b.fract() == 0.0 && b - a == 1.0
    });
    if !counting {
        return false;
    }
    let disagree = pairs
        .iter()
        .filter(|(_, marked, stated)| stated.is_some_and(|v| !parse::numbers_match(v, *marked)))
        .count();
    disagree * 2 > pairs.len()
}

/// Whether two questions are the same question in other words: their word sets overlap by
/// at least 80% (Jaccard). A generated question that restates the original, or another
/// generated one, adds no query to amortise over.
pub fn near_duplicate(a: &str, b: &str) -> bool {
    let words = |s: &str| -> std::collections::BTreeSet<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (a, b) = (words(a), words(b));
    if a.is_empty() || b.is_empty() {
        return a == b;
    }
    let shared = a.intersection(&b).count();
    let all = a.union(&b).count();
    shared * 5 >= all * 4
}

/// Where generated text came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub generator_model: String,
    pub generator_fingerprint: String,
    pub verifier_model: String,
    pub verifier_fingerprint: String,
    /// SHA-256 of the generation system prompt (for `per_call` pairs).
    pub prompt_sha256: String,
    pub prompt_version: u32,
    pub seed: u64,
    pub spec: MultiQuerySpec,
}

/// One generated pair with its verification (stored in the cache folder only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedPair {
    pub question: String,
    pub answer: f64,
    /// Answers of the verifying samples (in order; stops once the majority is decided).
    pub votes: Vec<Option<f64>>,
    pub kept: bool,
}

/// The generated set of one context (stored in the cache folder only: it holds text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedSet {
    pub original_id: String,
    pub provenance: Provenance,
    pub pairs: Vec<GeneratedPair>,
}

/// Counts for one context (committed with the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextCounts {
    pub context_id: String,
    pub proposed: usize,
    pub verified: usize,
    /// Ids of the kept questions, in order (`<original id>/q1`, ...).
    pub kept_ids: Vec<String>,
    /// Where the text is kept (the cache folder).
    pub cache_file: String,
}

/// `multiquery.json` in the run folder: ids, counts and provenance, no text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiQueryManifest {
    pub provenance: Provenance,
    pub contexts: Vec<ContextCounts>,
    pub total_proposed: usize,
    pub total_verified: usize,
}

/// The questions of one context: the original first.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub context_id: String,
    /// `(question_index, problem)`; index 0 is the original.
    pub problems: Vec<(u32, Problem)>,
}

/// Majority of `votes`: the value given most often (ties: the earliest), with its count.
pub fn majority(votes: &[Option<f64>]) -> Option<(f64, usize)> {
    let mut tally: Vec<(f64, usize)> = Vec::new();
    for v in votes.iter().flatten() {
        match tally.iter_mut().find(|(x, _)| parse::numbers_match(*x, *v)) {
            Some(t) => t.1 += 1,
            None => tally.push((*v, 1)),
        }
    }
    tally
        .into_iter()
        .fold(None, |best: Option<(f64, usize)>, t| match best {
            Some(b) if b.1 >= t.1 => Some(b),
            _ => Some(t),
        })
}

/// Verify `answer` for `question` with up to `samples` full-reasoning answers; stops as soon
/// as the majority is decided. Returns the votes and whether the majority agrees.
pub async fn verify(
    model: &dyn ModelBackend,
    context: &str,
    question: &str,
    answer: f64,
    spec: &MultiQuerySpec,
    seed: u64,
    budget: Budget,
) -> crate::Result<(Vec<Option<f64>>, bool)> {
    let need = spec.verify_samples as usize / 2 + 1;
    let mut votes = Vec::new();
    for i in 0..spec.verify_samples {
        let config = AnswerConfig {
            verbosity: Verbosity::new(budget.verbosity)?,
            max_tokens: budget.max_tokens,
            budget_forcing: Some(BudgetForcing::default()),
            temperature: spec.verify_temperature(),
            seed: Some(seed.wrapping_add(u64::from(i))),
            reuse_prefix: true,
        };
        let input = AnswerInput {
            context: Some(context).filter(|c| !c.trim().is_empty()),
            learned: None,
            question: Some(question),
        };
        let a = Answerer::new(model, config).answer(&input).await?;
        votes.push(a.number);
        let agree = votes
            .iter()
            .flatten()
            .filter(|v| parse::numbers_match(**v, answer))
            .count();
        let undecided = spec.verify_samples as usize - votes.len();
        if agree >= need {
            break;
        }
        if agree + undecided < need {
            break;
        }
    }
    let agree = votes
        .iter()
        .flatten()
        .filter(|v| parse::numbers_match(**v, answer))
        .count();
    Ok((votes, agree >= need))
}

fn set_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join("multiquery").join(format!("{key}.json"))
}

/// Generate and verify the extra questions of every problem's context; returns the groups
/// (original first) and the manifest to store in the run folder.
pub async fn build_groups(
    problems: &[Problem],
    generator: &dyn ModelBackend,
    verifier: &dyn ModelBackend,
    spec: &MultiQuerySpec,
    seed: u64,
    cache_dir: &Path,
    progress: &indicatif::ProgressBar,
) -> crate::Result<(Vec<Group>, MultiQueryManifest)> {
    let system = generation_system(spec.per_call);
    let ginfo = generator.info();
    let vinfo = verifier.info();
    let provenance = Provenance {
        generator_model: ginfo.name.clone(),
        generator_fingerprint: ginfo.fingerprint.clone(),
        verifier_model: vinfo.name.clone(),
        verifier_fingerprint: vinfo.fingerprint.clone(),
        prompt_sha256: hex::encode(Sha256::digest(system.as_bytes())),
        prompt_version: GENERATION_VERSION,
        seed,
        spec: spec.clone(),
    };
    let verify_budget = Budget::level(4);
    let mut groups = Vec::new();
    let mut counts = Vec::new();
    for problem in problems {
        progress.set_message(format!("multi-query: generating for {}", problem.id));
        let user = generation_user(problem);
        let mut h = Sha256::new();
        h.update(GENERATION_VERSION.to_le_bytes());
        for part in [
            ginfo.fingerprint.as_str(),
            vinfo.fingerprint.as_str(),
            &system,
            &user,
            &problem.id,
            &problem.context,
            &problem.question,
        ] {
            h.update(part.len().to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(seed.to_le_bytes());
        h.update(serde_json::to_vec(spec).unwrap_or_default());
        let key = hex::encode(h.finalize());
        let path = set_path(cache_dir, &key);
        let set = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<GeneratedSet>(&b).ok())
            .filter(|set| set.provenance.prompt_version == GENERATION_VERSION)
        {
            Some(set) => set,
            None => {
                let mut pairs: Vec<GeneratedPair> = Vec::new();
                for call in 0..spec.max_calls {
                    if pairs.iter().filter(|p| p.kept).count() >= spec.extra {
                        break;
                    }
                    let request = ChatRequest::new(
                        vec![Message::system(system.clone()), Message::user(user.clone())],
                        1536,
                    )
                    .with_sampling(
                        spec.temperature,
                        0.95,
                        Some(seed.wrapping_add(call as u64)),
                    );
                    let completion = generator.complete(&request).await?;
                    for (question, answer) in parse_pairs(&completion.text) {
                        if pairs.iter().filter(|p| p.kept).count() >= spec.extra {
                            break;
                        }
                        let same = |q: &str| near_duplicate(q, &question);
                        if same(&problem.question) || pairs.iter().any(|p| same(&p.question)) {
                            continue;
                        }
                        progress.set_message(format!(
                            "multi-query: verifying {} q{}",
                            problem.id,
                            pairs.len() + 1
                        ));
                        let (votes, kept) = verify(
                            verifier,
                            &problem.context,
                            &question,
                            answer,
                            spec,
                            seed,
                            verify_budget,
                        )
                        .await?;
                        pairs.push(GeneratedPair {
                            question,
                            answer,
                            votes,
                            kept,
                        });
                    }
                }
                let set = GeneratedSet {
                    original_id: problem.id.clone(),
                    provenance: provenance.clone(),
                    pairs,
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| crate::BenchError::io("create", parent, &e))?;
                }
                crate::record::write_json(&path, &set)?;
                set
            }
        };
        let mut members = vec![(0u32, problem.clone())];
        let mut kept_ids = Vec::new();
        for pair in set.pairs.iter().filter(|p| p.kept) {
            let index = u32::try_from(members.len()).unwrap_or(u32::MAX);
            let id = format!("{}/q{index}", problem.id);
            kept_ids.push(id.clone());
            members.push((
                index,
                Problem {
                    id,
                    question: pair.question.clone(),
                    answer: pair.answer,
                    answer_text: crate::datasets::symbolic::eval::float_str(pair.answer),
                    full_text: format!("{} {}", problem.context.trim(), pair.question),
                    solution: None,
                    ..problem.clone()
                },
            ));
        }
        counts.push(ContextCounts {
            context_id: problem.id.clone(),
            proposed: set.pairs.len(),
            verified: kept_ids.len(),
            kept_ids,
            cache_file: path.display().to_string(),
        });
        groups.push(Group {
            context_id: problem.id.clone(),
            problems: members,
        });
        progress.inc(1);
    }
    let manifest = MultiQueryManifest {
        provenance,
        total_proposed: counts.iter().map(|c| c.proposed).sum(),
        total_verified: counts.iter().map(|c| c.verified).sum(),
        contexts: counts,
    };
    Ok((groups, manifest))
}
