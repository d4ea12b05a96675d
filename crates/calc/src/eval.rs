//! Order-independent evaluation of a whole program.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use crate::error::{CalcError, ErrorKind};
use crate::program::Program;
use crate::value::Value;
use crate::Env;

/// The result of evaluating a [`Program`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// The names that evaluated, in source order.
    pub values: Vec<NamedValue>,
    /// The statements that failed, in source order.
    pub errors: Vec<StatementError>,
    /// Statements whose claimed value (`name = expr = claimed`) disagrees with the computed one.
    pub claimed_mismatches: Vec<ClaimMismatch>,
}

impl Evaluation {
    /// The value of `name`, if it evaluated.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.value)
    }

    /// All values as an environment, e.g. for [`crate::eval_expr`].
    pub fn env(&self) -> Env {
        self.values
            .iter()
            .map(|v| (v.name.clone(), v.value))
            .collect()
    }

    /// Whether every statement evaluated.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A computed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedValue {
    pub name: String,
    /// 1-based line of the defining statement.
    pub line: usize,
    pub value: Value,
}

/// A statement that did not evaluate. `Display`: `line 3, total: undefined name: pric`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementError {
    pub name: String,
    /// 1-based line of the statement.
    pub line: usize,
    pub error: CalcError,
}

impl StatementError {
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// The error message without the line and name.
    pub fn message(&self) -> String {
        self.error.to_string()
    }
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, {}: {}", self.line, self.name, self.error)
    }
}

/// A claimed value that disagrees with the computed one (see [`crate::Claim::matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMismatch {
    pub name: String,
    pub line: usize,
    /// The claim as written.
    pub claimed_text: String,
    pub claimed: Value,
    pub actual: Value,
}

impl fmt::Display for ClaimMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, {}: claimed {} but it is {}",
            self.line, self.name, self.claimed_text, self.actual
        )
    }
}

/// Evaluates every statement in dependency order, whatever the source order.
///
/// A statement fails on its own (parse error, division by zero, ...) or because of others:
/// undefined names, a cycle (each member gets the cycle from its own name), a name defined
/// twice with different expressions (every definition of it fails), or a failed dependency
/// ("depends on failed x"). Everything else still evaluates.
pub fn evaluate(program: &Program) -> Evaluation {
    let stmts = &program.statements;
    let mut errors: Vec<StatementError> = Vec::new();
    let fail = |errors: &mut Vec<StatementError>, i: usize, error: CalcError| {
        errors.push(StatementError {
            name: stmts[i].name.clone(),
            line: stmts[i].line,
            error,
        });
    };

    // Names defined more than once are failed outright.
    let mut first_def: HashMap<&str, usize> = HashMap::new();
    let mut duplicated: BTreeSet<&str> = BTreeSet::new();
    for (i, st) in stmts.iter().enumerate() {
        if let Some(&j) = first_def.get(st.name.as_str()) {
            duplicated.insert(st.name.as_str());
            fail(
                &mut errors,
                i,
                CalcError::DuplicateDefinition {
                    name: st.name.clone(),
                    first_line: stmts[j].line,
                    second_line: st.line,
                },
            );
        } else {
            first_def.insert(st.name.as_str(), i);
        }
    }
    for name in &duplicated {
        let i = first_def[name];
        let second = stmts
            .iter()
            .skip(i + 1)
            .find(|s| s.name == *name)
            .map_or(0, |s| s.line);
        fail(
            &mut errors,
            i,
            CalcError::DuplicateDefinition {
                name: name.to_string(),
                first_line: stmts[i].line,
                second_line: second,
            },
        );
    }

    // Node per uniquely defined name; `failed` holds names that have no value.
    let nodes: Vec<usize> = first_def
        .values()
        .copied()
        .filter(|&i| !duplicated.contains(stmts[i].name.as_str()))
        .collect();
    let mut failed: BTreeSet<&str> = duplicated.clone();
    let mut pending: Vec<usize> = Vec::new();
    for &i in &nodes {
        match &stmts[i].expr {
            Err(e) => {
                fail(&mut errors, i, e.clone());
                failed.insert(stmts[i].name.as_str());
            }
            Ok(_) => pending.push(i),
        }
    }
    pending.sort_unstable();

    // Kahn's algorithm over dependencies between pending statements, in source order.
    let index_of: HashMap<&str, usize> = pending
        .iter()
        .map(|&i| (stmts[i].name.as_str(), i))
        .collect();
    let deps = |i: usize| -> Vec<usize> {
        match &stmts[i].expr {
            Ok(e) => e
                .names()
                .iter()
                .filter_map(|n| index_of.get(n.as_str()).copied())
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    let mut indegree: HashMap<usize, usize> = HashMap::new();
    let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &pending {
        let d = deps(i);
        indegree.insert(i, d.len());
        for j in d {
            dependents.entry(j).or_default().push(i);
        }
    }
    let mut ready: VecDeque<usize> = pending
        .iter()
        .copied()
        .filter(|i| indegree[i] == 0)
        .collect();
    let mut env = Env::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut values: Vec<NamedValue> = Vec::new();
    let mut mismatches: Vec<ClaimMismatch> = Vec::new();
    while let Some(i) = ready.pop_front() {
        done.insert(i);
        let st = &stmts[i];
        let Ok(expr) = &st.expr else { continue };
        match check_names(expr.names(), &first_def, &failed) {
            Err(e) => {
                fail(&mut errors, i, e);
                failed.insert(st.name.as_str());
            }
            Ok(()) => match expr.eval(&env) {
                Ok(v) => {
                    env.insert(st.name.clone(), v);
                    values.push(NamedValue {
                        name: st.name.clone(),
                        line: st.line,
                        value: v,
                    });
                    if let Some(claim) = &st.claim {
                        if let (Some(false), Some(claimed)) = (claim.matches(&v), claim.value) {
                            mismatches.push(ClaimMismatch {
                                name: st.name.clone(),
                                line: st.line,
                                claimed_text: claim.text.clone(),
                                claimed,
                                actual: v,
                            });
                        }
                    }
                }
                Err(e) => {
                    fail(&mut errors, i, e);
                    failed.insert(st.name.as_str());
                }
            },
        }
        for &j in dependents.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            let d = indegree.get_mut(&j).expect("pending node");
            *d -= 1;
            if *d == 0 {
                ready.push_back(j);
            }
        }
    }

    // What is left is on a cycle or depends on one.
    let left: Vec<usize> = pending
        .iter()
        .copied()
        .filter(|i| !done.contains(i))
        .collect();
    let left_set: BTreeSet<usize> = left.iter().copied().collect();
    for &i in &left {
        let st = &stmts[i];
        let Ok(expr) = &st.expr else { continue };
        let undefined: Vec<String> = expr
            .names()
            .iter()
            .filter(|n| !first_def.contains_key(n.as_str()))
            .cloned()
            .collect();
        let error = if !undefined.is_empty() {
            CalcError::UndefinedName { names: undefined }
        } else if let Some(cycle) = find_cycle(i, &left_set, &deps) {
            CalcError::Cycle {
                cycle: cycle.iter().map(|&k| stmts[k].name.clone()).collect(),
            }
        } else {
            let names = expr
                .names()
                .iter()
                .filter(|n| {
                    failed.contains(n.as_str())
                        || index_of
                            .get(n.as_str())
                            .is_some_and(|k| left_set.contains(k))
                })
                .cloned()
                .collect();
            CalcError::DependencyFailed { names }
        };
        fail(&mut errors, i, error);
    }

    errors.sort_by_key(|e| e.line);
    values.sort_by_key(|v| v.line);
    mismatches.sort_by_key(|m| m.line);
    Evaluation {
        values,
        errors,
        claimed_mismatches: mismatches,
    }
}

/// Undefined names first, then failed dependencies.
fn check_names(
    names: &[String],
    defined: &HashMap<&str, usize>,
    failed: &BTreeSet<&str>,
) -> Result<(), CalcError> {
    let undefined: Vec<String> = names
        .iter()
        .filter(|n| !defined.contains_key(n.as_str()))
        .cloned()
        .collect();
    if !undefined.is_empty() {
        return Err(CalcError::UndefinedName { names: undefined });
    }
    let bad: Vec<String> = names
        .iter()
        .filter(|n| failed.contains(n.as_str()))
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(CalcError::DependencyFailed { names: bad });
    }
    Ok(())
}

/// A shortest cycle through `start` within `within`, as `[start, ..., start]`.
fn find_cycle(
    start: usize,
    within: &BTreeSet<usize>,
    deps: &dyn Fn(usize) -> Vec<usize>,
) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    for d in deps(start) {
        if within.contains(&d) && !parent.contains_key(&d) {
            parent.insert(d, start);
            queue.push_back(d);
        }
    }
    while let Some(n) = queue.pop_front() {
        if n == start {
            // Walk back from start's predecessor to start.
            let mut path = vec![start];
            let mut cur = parent[&start];
            while cur != start {
                path.push(cur);
                cur = parent[&cur];
            }
            path.push(start);
            // `path` runs against the edges (start <- ... <- start); edges point to
            // dependencies, so reverse it to read "start uses x uses ... uses start".
            path.reverse();
            return Some(path);
        }
        for d in deps(n) {
            if within.contains(&d) && !parent.contains_key(&d) {
                parent.insert(d, n);
                queue.push_back(d);
            }
        }
    }
    None
}
