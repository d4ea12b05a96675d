//! Reading the final number out of a model's answer.
//!
//! Order of preference: the last `\boxed{...}`, then the last "answer is / Answer: N",
//! then the last number anywhere. Numbers may carry `$`, thousands commas, a sign, decimals,
//! a percent sign, or be a fraction (`3/4`, `\frac{3}{4}`). Zero parses like any other number.

/// The final number in `text`, if there is one.
pub fn final_number(text: &str) -> Option<f64> {
    if let Some(inner) = last_boxed(text) {
        if let Some(n) = last_number(&inner) {
            return Some(n);
        }
    }
    let lower = text.to_ascii_lowercase();
    let markers = ["answer is", "answer:", "answer =", "final answer"];
    let after_marker = markers
        .iter()
        .filter_map(|m| lower.rfind(m).map(|i| i + m.len()))
        .max();
    if let Some(start) = after_marker {
        if let Some(n) = first_number(&text[start..]) {
            return Some(n);
        }
    }
    last_number(text)
}

/// Whether a predicted number matches the gold one (relative tolerance 1e-6, absolute 1e-9).
pub fn numbers_match(predicted: f64, gold: f64) -> bool {
    let diff = (predicted - gold).abs();
    diff <= 1e-9 || diff <= 1e-6 * gold.abs().max(predicted.abs())
}

/// Content of the last `\boxed{...}`, with nested braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_owned());
                }
            }
            _ => {}
        }
    }
    Some(text[start..].to_owned())
}

/// Whether `answer` is one of the numbers written in `text`: a learned context *backs* an
/// answer it states. An answer from `c'` that `c'` does not back was not read off the notes,
/// so it is worth re-checking with full reasoning.
pub fn backed_by(text: &str, answer: f64) -> bool {
    numbers(text).iter().any(|v| numbers_match(*v, answer))
}

/// All numbers in order of appearance.
pub fn numbers(text: &str) -> Vec<f64> {
    let normalised = normalise_fracs(text);
    let chars: Vec<char> = normalised.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if let Some((value, next)) = number_at(&chars, i) {
            out.push(value);
            i = next;
        } else {
            i += 1;
        }
    }
    out
}

fn first_number(text: &str) -> Option<f64> {
    numbers(text).into_iter().next()
}

fn last_number(text: &str) -> Option<f64> {
    numbers(text).into_iter().last()
}

/// `\frac{a}{b}` and `\dfrac{a}{b}` become `a/b`.
fn normalise_fracs(text: &str) -> String {
    let mut s = text
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac");
    while let Some(i) = s.find("\\frac{") {
        let rest = &s[i + 6..];
        let Some(a_end) = rest.find('}') else { break };
        let a = rest[..a_end].to_owned();
        let after = &rest[a_end + 1..];
        let Some(b_start) = after.strip_prefix('{') else {
            break;
        };
        let Some(b_end) = b_start.find('}') else {
            break;
        };
        let b = b_start[..b_end].to_owned();
        let consumed = 6 + a_end + 1 + 1 + b_end + 1;
        s.replace_range(i..i + consumed, &format!("{a}/{b}"));
    }
    s
}

/// A number starting at `i`: returns its value and the index after it.
fn number_at(chars: &[char], i: usize) -> Option<(f64, usize)> {
    let mut j = i;
    let mut negative = false;
    if chars[j] == '-' || chars[j] == '−' {
        // A minus counts only when it is not subtraction between two numbers ("5-3").
        let prev_is_digit = j > 0 && chars[j - 1].is_ascii_digit();
        if prev_is_digit {
            return None;
        }
        negative = true;
        j += 1;
    }
    if j < chars.len() && chars[j] == '$' {
        j += 1;
    }
    if j >= chars.len() || !chars[j].is_ascii_digit() {
        return None;
    }
    // A digit glued to a preceding letter or digit is part of a word ("x2", "Q3"); skip it.
    if i > 0 && !negative && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '.') {
        return None;
    }
    let mut digits = String::new();
    while j < chars.len() {
        let c = chars[j];
        if c.is_ascii_digit() {
            digits.push(c);
            j += 1;
        } else if c == ','
            && j + 3 < chars.len() + 1
            && chars
                .get(j + 1..j + 4)
                .is_some_and(|d| d.iter().all(char::is_ascii_digit))
            && !chars.get(j + 4).is_some_and(char::is_ascii_digit)
        {
            // Thousands separator: exactly three digits follow.
            j += 1;
        } else if c == '.'
            && chars.get(j + 1).is_some_and(char::is_ascii_digit)
            && !digits.contains('.')
        {
            digits.push('.');
            j += 1;
        } else {
            break;
        }
    }
    let mut value: f64 = digits.parse().ok()?;
    // A fraction a/b.
    if j + 1 < chars.len() && chars[j] == '/' && chars[j + 1].is_ascii_digit() {
        let mut k = j + 1;
        let mut den = String::new();
        while k < chars.len()
            && (chars[k].is_ascii_digit()
                || (chars[k] == '.' && chars.get(k + 1).is_some_and(char::is_ascii_digit)))
        {
            den.push(chars[k]);
            k += 1;
        }
        if let Ok(d) = den.parse::<f64>() {
            if d != 0.0 {
                value /= d;
                j = k;
            }
        }
    }
    if negative {
        value = -value;
    }
    Some((value, j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_back_only_the_numbers_written_in_them() {
        let notes = "- total_feed = 12 * 35 = 420  (feed per week)\n- half = 1/2 = 0.5";
        assert!(backed_by(notes, 420.0));
        assert!(
            backed_by(notes, 35.0),
            "a number of an expression is written too"
        );
        assert!(backed_by(notes, 0.5));
        assert!(!backed_by(notes, 421.0));
        assert!(!backed_by("", 0.0));
    }

    #[test]
    fn the_answer_is_wins_over_later_numbers() {
        assert_eq!(
            final_number("The answer is 42. (Checked in 2 steps.)"),
            Some(42.0)
        );
        assert_eq!(final_number("Answer: $1,234.50"), Some(1234.5));
    }

    #[test]
    fn boxed_first() {
        assert_eq!(
            final_number("so x = 3 and \\boxed{\\frac{3}{4}} and 9"),
            Some(0.75)
        );
        assert_eq!(final_number("\\boxed{0}"), Some(0.0));
        assert_eq!(final_number("\\boxed{{12}}"), Some(12.0));
    }

    #[test]
    fn last_number_fallback_and_zero() {
        assert_eq!(final_number("12 apples, then 0"), Some(0.0));
        assert_eq!(final_number("no numbers here"), None);
        assert_eq!(final_number("It is -5 degrees"), Some(-5.0));
        assert_eq!(final_number("10-3=7"), Some(7.0));
    }

    #[test]
    fn commas_words_and_percent() {
        assert_eq!(numbers("1,000,000 and 3,5"), vec![1_000_000.0, 3.0, 5.0]);
        assert_eq!(numbers("Q3 x2 50%"), vec![50.0]);
        assert_eq!(final_number("The answer is 12.5%."), Some(12.5));
    }

    #[test]
    fn matching_tolerates_float_noise() {
        assert!(numbers_match(0.1 + 0.2, 0.3));
        assert!(numbers_match(0.0, 0.0));
        assert!(!numbers_match(18.0, 6.0));
    }
}
