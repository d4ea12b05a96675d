//! Gold answers in GSM8K format: worked reasoning, then a final line `#### <number>`.

/// A parsed GSM-style answer field.
#[derive(Debug, Clone, PartialEq)]
pub struct GsmAnswer {
    /// The final number.
    pub value: f64,
    /// The final number as text, normalised like the paper's grader: `$`, `,` and spaces
    /// removed, `.` trimmed from both ends (`"1,234"` -> `"1234"`, `"32.5"` stays).
    pub text: String,
    /// The worked reasoning before the `####` line (trimmed; may be empty).
    pub reasoning: String,
}

/// Normalises an answer string the way Letta's GSM grader does for the gold answer.
pub fn normalize_answer_text(raw: &str) -> String {
    let s: String = raw
        .chars()
        .filter(|c| !matches!(c, '$' | ',') && !c.is_whitespace())
        .collect();
    s.trim_matches('.').to_string()
}

/// Parses the `answer` field of a GSM8K / GSM-Symbolic row.
///
/// ```
/// use sleeptime_bench::datasets::parse_gsm_answer;
/// let a = parse_gsm_answer("3 + 4 = <<3+4=7>>7\n#### 1,234").unwrap();
/// assert_eq!(a.value, 1234.0);
/// assert_eq!(a.text, "1234");
/// assert_eq!(a.reasoning, "3 + 4 = <<3+4=7>>7");
/// ```
pub fn parse_gsm_answer(field: &str) -> Result<GsmAnswer, String> {
    let pos = field
        .rfind("####")
        .ok_or_else(|| "answer has no `####` marker".to_string())?;
    let after = &field[pos + 4..];
    let first_line = after.lines().next().unwrap_or("").trim();
    if first_line.is_empty() {
        return Err("nothing after `####`".into());
    }
    let text = normalize_answer_text(first_line);
    let value: f64 = text
        .parse()
        .map_err(|_| format!("final answer `{first_line}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("final answer `{first_line}` is not finite"));
    }
    Ok(GsmAnswer {
        value,
        text,
        reasoning: field[..pos].trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let p = |s: &str| parse_gsm_answer(s).expect(s);
        assert_eq!(p("#### 1,234").value, 1234.0);
        assert_eq!(p("x\n#### 32.5").value, 32.5);
        assert_eq!(p("x\n#### 32.5").text, "32.5");
        assert_eq!(p("#### -7").value, -7.0);
        assert_eq!(p("#### $18").value, 18.0);
        assert_eq!(p("#### $1,000.50").text, "1000.50");
        assert_eq!(p("#### 45.0").text, "45.0");
        assert_eq!(p("#### 18.").text, "18");
        assert_eq!(p("a #### 1\nb #### 2").value, 2.0);
        assert_eq!(p("#### 3 \n").value, 3.0);
    }

    #[test]
    fn errors() {
        assert!(parse_gsm_answer("no marker").is_err());
        assert!(parse_gsm_answer("####   ").is_err());
        assert!(parse_gsm_answer("#### twelve").is_err());
    }
}
