//! Loaders for GSM-format JSONL files: GSM-Symbolic P2 as released, GSM8K test and any
//! JSONL with `question` and `answer` (`... #### N`) fields.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

use super::answer::parse_gsm_answer;
use super::rng::{hash_str, SeededRng};
use super::split::{split_gsm, SplitMode};
use super::symbolic::template::question_texts;
use super::{Dataset, DatasetError, DatasetKind, Problem, Split};

/// One parsed JSONL line.
struct Row {
    line: usize,
    obj: serde_json::Map<String, Json>,
}

fn read_rows(path: &Path) -> Result<Vec<Row>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let v: Json = serde_json::from_str(trimmed).map_err(|source| DatasetError::Json {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        match v {
            Json::Object(obj) => rows.push(Row { line: line_no, obj }),
            _ => {
                return Err(DatasetError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("line {line_no}: expected a JSON object"),
                })
            }
        }
    }
    Ok(rows)
}

fn text_field<'a>(row: &'a Row, path: &Path, field: &'static str) -> Result<&'a str, DatasetError> {
    row.obj
        .get(field)
        .and_then(Json::as_str)
        .ok_or_else(|| missing(row, path, field))
}

/// A field of any JSON type.
fn any_field<'a>(row: &'a Row, path: &Path, field: &'static str) -> Result<&'a Json, DatasetError> {
    row.obj.get(field).ok_or_else(|| missing(row, path, field))
}

fn missing(row: &Row, path: &Path, field: &'static str) -> DatasetError {
    DatasetError::MissingField {
        path: path.to_path_buf(),
        line: row.line,
        field,
    }
}

fn id_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Builds a problem from a question and a GSM answer field.
fn gsm_problem(
    id: String,
    question: &str,
    answer_field: &Json,
    mode: SplitMode,
    source: DatasetKind,
    template_id: Option<String>,
    template: Option<String>,
) -> Result<Problem, String> {
    let (answer, answer_text, solution) = match answer_field {
        Json::String(s) => {
            let a = parse_gsm_answer(s)?;
            (a.value, a.text, Some(s.clone()))
        }
        Json::Number(n) => {
            let v = n.as_f64().ok_or("answer is not a finite number")?;
            (v, n.to_string(), None)
        }
        _ => return Err("answer must be a string ending in `#### N` or a number".into()),
    };
    let full_text = question.trim().to_string();
    let (context, q) = split_gsm(&full_text, mode);
    Ok(Problem {
        id,
        context,
        question: q,
        answer,
        answer_text,
        source,
        template_id,
        template,
        full_text,
        solution,
    })
}

fn dataset_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "dataset".to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Loads any JSONL in GSM-Symbolic format: each line an object with a `question` string and
/// an `answer` that is either GSM text ending in `#### N` or a plain number. The id is the
/// `id` field (string or number; with `-{instance}` appended when an `instance` field
/// exists) or else the 1-based line number. Errors name the file and the line.
pub fn load_jsonl(path: impl AsRef<Path>, mode: SplitMode) -> Result<Dataset, DatasetError> {
    let path = path.as_ref();
    let mut problems = Vec::new();
    for row in read_rows(path)? {
        let question = text_field(&row, path, "question")?;
        let answer = any_field(&row, path, "answer")?;
        let mut id = row
            .obj
            .get("id")
            .and_then(id_text)
            .unwrap_or_else(|| row.line.to_string());
        if let Some(inst) = row.obj.get("instance").and_then(id_text) {
            id = format!("{id}-{inst}");
        }
        let p = gsm_problem(id, question, answer, mode, DatasetKind::Custom, None, None).map_err(
            |message| DatasetError::BadAnswer {
                path: path.to_path_buf(),
                line: row.line,
                message,
            },
        )?;
        problems.push(p);
    }
    Ok(Dataset {
        name: dataset_name(path),
        problems,
    })
}

/// Loads GSM8K test (`gsm8k/test.jsonl`); ids are `gsm8k/{0-based row}`.
pub fn load_gsm8k(path: impl AsRef<Path>, mode: SplitMode) -> Result<Dataset, DatasetError> {
    let path = path.as_ref();
    let mut problems = Vec::new();
    for (i, row) in read_rows(path)?.into_iter().enumerate() {
        let question = text_field(&row, path, "question")?;
        let answer = any_field(&row, path, "answer")?;
        let p = gsm_problem(
            format!("gsm8k/{i}"),
            question,
            answer,
            mode,
            DatasetKind::Gsm8k,
            None,
            None,
        )
        .map_err(|message| DatasetError::BadAnswer {
            path: path.to_path_buf(),
            line: row.line,
            message,
        })?;
        problems.push(p);
    }
    Ok(Dataset {
        name: "gsm8k-test".into(),
        problems,
    })
}

/// Loads Apple's released GSM-Symbolic P2 (`gsm_symbolic/GSM_p2.jsonl`); ids are
/// `p2/{template id}-{instance}` and `template_id` is set. `template` is the template's
/// question text with placeholders when `templates/p2/` next to the file has that template
/// (see [`load_gsm_symbolic_release`]). The split is computed here, in memory (the data is
/// CC BY-NC-ND 4.0: never write a derived copy).
pub fn load_gsm_p2(path: impl AsRef<Path>, mode: SplitMode) -> Result<Dataset, DatasetError> {
    load_gsm_symbolic_release(path.as_ref(), Split::P2, mode)
}

/// Loads a released GSM-Symbolic file of any split (`GSM_symbolic.jsonl`, `GSM_p1.jsonl`,
/// `GSM_p2.jsonl`; only P2 is in the shared data folder). Each row's `template` is read from
/// the template files in `templates/{split}/` beside the file, matched on the row's `id`
/// (the templates' `id_shuffled`); it stays `None` when there is no such template.
pub fn load_gsm_symbolic_release(
    path: &Path,
    split: Split,
    mode: SplitMode,
) -> Result<Dataset, DatasetError> {
    let templates = path.parent().map_or_else(BTreeMap::new, |dir| {
        question_texts(&dir.join("templates").join(split.dir_name()))
    });
    let mut problems = Vec::new();
    for row in read_rows(path)? {
        let question = text_field(&row, path, "question")?;
        let answer = any_field(&row, path, "answer")?;
        let tid = id_text(any_field(&row, path, "id")?).ok_or_else(|| missing(&row, path, "id"))?;
        let inst = id_text(any_field(&row, path, "instance")?)
            .ok_or_else(|| missing(&row, path, "instance"))?;
        let id = format!("{}/{tid}-{inst}", split.dir_name());
        let template = templates.get(&tid).cloned();
        let p = gsm_problem(
            id,
            question,
            answer,
            mode,
            DatasetKind::GsmSymbolic(split),
            Some(tid),
            template,
        )
        .map_err(|message| DatasetError::BadAnswer {
            path: path.to_path_buf(),
            line: row.line,
            message,
        })?;
        problems.push(p);
    }
    Ok(Dataset {
        name: format!("gsm-symbolic-{}", split.dir_name()),
        problems,
    })
}

/// Orders template ids numerically when they are numbers.
fn id_key(id: &str) -> (u8, i64, String) {
    match id.parse::<i64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, id.to_string()),
    }
}

/// Picks `n` problems with a fixed seed, stratified over `template_id`: the problems of each
/// template are shuffled, then templates are visited round-robin (in id order) taking one
/// problem each, so every template is represented before any repeats (problems without a
/// template id form one group). Returns everything, shuffled the same way, when `n` exceeds
/// the total. The result depends only on the problem ids, `n` and `seed`.
pub fn sample_stratified(problems: &[Problem], n: usize, seed: u64) -> Vec<Problem> {
    let mut groups: BTreeMap<(u8, i64, String), Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        let key = p
            .template_id
            .as_deref()
            .map_or((2, 0, String::new()), id_key);
        groups.entry(key).or_default().push(p);
    }
    let mut queues: Vec<Vec<&Problem>> = groups
        .into_iter()
        .map(|(key, mut g)| {
            g.sort_by(|a, b| a.id.cmp(&b.id));
            let mut rng = SeededRng::derive(seed, &[hash_str(&format!("{key:?}"))]);
            rng.shuffle(&mut g);
            g.reverse(); // pop from the back = take in shuffled order
            g
        })
        .collect();
    let mut out = Vec::with_capacity(n.min(problems.len()));
    while out.len() < n {
        let mut took = false;
        for q in &mut queues {
            if out.len() >= n {
                break;
            }
            if let Some(p) = q.pop() {
                out.push(p.clone());
                took = true;
            }
        }
        if !took {
            break;
        }
    }
    out
}
