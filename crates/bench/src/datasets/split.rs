//! Stateful split of a word problem into *context* (everything but the question) and
//! *question*.

use serde::{Deserialize, Serialize};

/// How to split a GSM-style problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// Letta's released rule (`create_stateful_gsm_symbolic.py`): split on every `.`, strip,
    /// drop empty pieces; context = all pieces but the last joined with `". "` plus a final
    /// `"."`; question = the last piece. Kept to compare with the paper; it breaks decimals
    /// (`2.5` -> `2` / `5`) and titles (`Dr. Patel`), drops the final period, and gives the
    /// context `"."` to a problem without any period.
    Paper,
    /// Sentence-aware split (the default): sentences end at `.`, `?` or `!` (plus closing
    /// quotes or brackets) followed by whitespace or the end of the text, but not inside
    /// numbers (`3.5`, `$1.50`), after titles and some abbreviations (`Dr.`, `Mrs.`, `St.`,
    /// `e.g.`, `i.e.`, `vs.`), nor at a period followed by a lower-case word (`2 lb. of`,
    /// `8 a.m. and`; so `etc.`/`a.m.` end a sentence only before a capital). Context =
    /// all sentences but the last (original spacing kept), question = the last sentence;
    /// one sentence gives an empty context. Exception: when the last sentence does not ask
    /// (no `?`, does not start with Calculate/Find/What/How/...) but an earlier one ends
    /// with `?`, that sentence is the question and the context is all the others in order
    /// (GSM-Symbolic P2 templates 27 and 48 put a note after the question).
    #[default]
    Sentences,
}

/// Titles and abbreviations after which a period never ends a sentence (lower case,
/// without the final period).
const NEVER_END: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "capt", "sgt", "lt", "vs", "e.g",
    "i.e", "cf",
];

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | ']' | '»')
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '?' | '!')
}

/// The word immediately before byte offset `end` (no whitespace, leading punctuation
/// trimmed), lower-cased.
fn word_before(text: &str, end: usize) -> String {
    let head = &text[..end];
    let start = head.rfind(char::is_whitespace).map_or(0, |i| {
        i + head[i..].chars().next().map_or(1, char::len_utf8)
    });
    head[start..]
        .trim_start_matches(['(', '"', '\'', '“', '‘', '['])
        .to_lowercase()
}

/// Byte ranges `(start, end)` of the sentences of `text`, trimmed.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    let mut k = 0;
    while k < chars.len() {
        let (pos, c) = chars[k];
        if start.is_none() && !c.is_whitespace() {
            start = Some(pos);
        }
        if !is_terminator(c) {
            k += 1;
            continue;
        }
        // run of terminators, then closing quotes/brackets
        let mut j = k;
        while j < chars.len() && is_terminator(chars[j].1) {
            j += 1;
        }
        let periods = chars[k..j].iter().all(|(_, ch)| *ch == '.');
        let only_period = j == k + 1 && c == '.';
        while j < chars.len() && is_closer(chars[j].1) {
            j += 1;
        }
        let at_end = j >= chars.len();
        let before_space = !at_end && chars[j].1.is_whitespace();
        let mut boundary = at_end || before_space;
        if boundary && periods && !at_end {
            let next_lower = chars[j..]
                .iter()
                .find(|(_, ch)| !ch.is_whitespace())
                .is_some_and(|(_, ch)| ch.is_lowercase());
            // "lb. of flour", "8 a.m. and", "wait... what": periods before a lower-case
            // word do not end a sentence; neither does one after a title ("Dr. Patel").
            if next_lower || (only_period && NEVER_END.contains(&word_before(text, pos).as_str())) {
                boundary = false;
            }
        }
        if boundary {
            let end = if at_end { text.len() } else { chars[j].0 };
            if let Some(s) = start.take() {
                spans.push((s, end));
            }
        }
        k = j.max(k + 1);
    }
    if let Some(s) = start {
        let e = text.trim_end().len();
        if e > s {
            spans.push((s, e));
        }
    }
    spans
}

/// The sentences of `text` (see [`SplitMode::Sentences`]).
pub fn sentences(text: &str) -> Vec<&str> {
    sentence_spans(text)
        .into_iter()
        .map(|(a, b)| &text[a..b])
        .collect()
}

/// Words that start a sentence which asks for the answer.
const ASKING_STARTS: &[&str] = &[
    "calculate",
    "find",
    "compute",
    "determine",
    "what",
    "how",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
];

/// Whether a sentence asks for the answer: it ends with `?` (before closing quotes) or
/// starts with an interrogative or an imperative such as Calculate or Find.
pub fn is_asking_sentence(s: &str) -> bool {
    let t = s.trim().trim_end_matches(is_closer);
    if t.ends_with('?') {
        return true;
    }
    let first = t
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_lowercase();
    ASKING_STARTS.contains(&first.as_str())
}

/// Splits `text` into `(context, question)`.
///
/// ```
/// use sleeptime_bench::datasets::{split_gsm, SplitMode};
/// let q = "Dr. Lee buys 2.5 kg of rice for $1.50. How much does he pay?";
/// assert_eq!(
///     split_gsm(q, SplitMode::Sentences),
///     ("Dr. Lee buys 2.5 kg of rice for $1.50.".to_string(), "How much does he pay?".to_string())
/// );
/// assert_eq!(
///     split_gsm(q, SplitMode::Paper),
///     ("Dr. Lee buys 2. 5 kg of rice for $1. 50.".to_string(), "How much does he pay?".to_string())
/// );
/// ```
pub fn split_gsm(text: &str, mode: SplitMode) -> (String, String) {
    match mode {
        SplitMode::Paper => {
            let pieces: Vec<&str> = text
                .split('.')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let Some((last, head)) = pieces.split_last() else {
                return (".".to_string(), String::new());
            };
            let context = format!("{}.", head.join(". ").trim());
            (context, (*last).to_string())
        }
        SplitMode::Sentences => {
            let spans = sentence_spans(text);
            match spans.as_slice() {
                [] => (String::new(), String::new()),
                [(a, b)] => (String::new(), text[*a..*b].to_string()),
                [(first, _), .., (last_start, last_end)] => {
                    let last_asks = is_asking_sentence(&text[*last_start..*last_end]);
                    let earlier = spans
                        .iter()
                        .rposition(|&(a, b)| text[a..b].trim_end_matches(is_closer).ends_with('?'));
                    match earlier {
                        Some(qi) if !last_asks => {
                            let (qs, qe) = spans[qi];
                            let before = text[*first..qs].trim_end();
                            let after = text[qe..*last_end].trim_start();
                            let context = if before.is_empty() {
                                after.to_string()
                            } else {
                                format!("{before} {after}")
                            };
                            (context, text[qs..qe].to_string())
                        }
                        _ => (
                            text[*first..*last_start].trim_end().to_string(),
                            text[*last_start..*last_end].to_string(),
                        ),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> (String, String) {
        split_gsm(text, SplitMode::Sentences)
    }

    #[test]
    fn basic_and_single_sentence() {
        assert_eq!(
            s("Ann has 3 cats. How many legs?"),
            ("Ann has 3 cats.".into(), "How many legs?".into())
        );
        assert_eq!(
            s("How many legs do 3 cats have?"),
            (String::new(), "How many legs do 3 cats have?".into())
        );
        assert_eq!(s(""), (String::new(), String::new()));
        assert_eq!(s("  \n "), (String::new(), String::new()));
    }

    #[test]
    fn decimals_money_and_titles() {
        let (c, q) = s("Mrs. Smith paid $1.50 for 2.5 lb. of apples at 9 a.m. on Monday. Dr. Patel paid 3.75. What is the total?");
        assert_eq!(
            c,
            "Mrs. Smith paid $1.50 for 2.5 lb. of apples at 9 a.m. on Monday. Dr. Patel paid 3.75."
        );
        assert_eq!(q, "What is the total?");
        let v = sentences("He woke at 7 a.m. He left at 8 a.m. and came back.");
        assert_eq!(v, ["He woke at 7 a.m.", "He left at 8 a.m. and came back."]);
        let v = sentences("Fruits, e.g. apples, vs. pears etc. are sold. Buy some etc. Then go.");
        assert_eq!(
            v,
            [
                "Fruits, e.g. apples, vs. pears etc. are sold.",
                "Buy some etc.",
                "Then go."
            ]
        );
    }

    #[test]
    fn quotes_exclamations_and_newlines() {
        let v = sentences(
            "The sign said \"Buy 2, get 1 free.\" She bought 6! Really?! How many did she get?",
        );
        assert_eq!(
            v,
            [
                "The sign said \"Buy 2, get 1 free.\"",
                "She bought 6!",
                "Really?!",
                "How many did she get?"
            ]
        );
        let (c, q) = s("Line one.\nLine two.\n\nWhat now?");
        assert_eq!(c, "Line one.\nLine two.");
        assert_eq!(q, "What now?");
    }

    #[test]
    fn last_sentence_without_terminator() {
        let (c, q) = s("He has 4 apples. Find the number of apples he has left after eating 2");
        assert_eq!(c, "He has 4 apples.");
        assert_eq!(q, "Find the number of apples he has left after eating 2");
    }

    #[test]
    fn note_after_the_question_goes_to_the_context() {
        let (c, q) = s("Ann has 4 cats. How many legs do they have? Note that one cat has 3 legs.");
        assert_eq!(q, "How many legs do they have?");
        assert_eq!(c, "Ann has 4 cats. Note that one cat has 3 legs.");
        // an imperative last sentence is the question
        let (c, q) = s("Is it 5? Ann has 4 cats. Calculate the number of legs.");
        assert_eq!(q, "Calculate the number of legs.");
        assert_eq!(c, "Is it 5? Ann has 4 cats.");
    }

    #[test]
    fn paper_mode_reproduces_letta_quirks() {
        let p = |t: &str| split_gsm(t, SplitMode::Paper);
        assert_eq!(
            p("Ann has 3 cats. How many legs?"),
            ("Ann has 3 cats.".into(), "How many legs?".into())
        );
        // the final period is lost
        assert_eq!(
            p("Ann has 3 cats. Count the legs."),
            ("Ann has 3 cats.".into(), "Count the legs".into())
        );
        // decimals break
        assert_eq!(
            p("It costs 2.5 dollars. How much for 2?"),
            ("It costs 2. 5 dollars.".into(), "How much for 2?".into())
        );
        // no period at all: the context is a lone "."
        assert_eq!(p("How many?"), (".".into(), "How many?".into()));
    }
}
