//! Pure text helpers for generation: UTF-8 reassembly, stop strings, chat-message mapping.
//!
//! Kept free of llama.cpp types so they are unit-tested without a model.

use sleeptime_model::{Message, Role};

/// The longest prefix of `bytes` that is valid UTF-8.
///
/// Tokens can end in the middle of a multi-byte character; the tail waits for the next token
/// instead of being decoded as U+FFFD.
pub(crate) fn valid_utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        // `valid_up_to` marks a char boundary, so this second parse cannot fail.
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// The largest char boundary of `s` that is `<= i`.
pub(crate) fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Finds stop strings in text that grows token by token, scanning only the part that can
/// hold a match not seen before.
#[derive(Debug)]
pub(crate) struct StopScanner {
    stops: Vec<String>,
    max_len: usize,
    /// Bytes of text already searched without a match.
    searched: usize,
}

impl StopScanner {
    pub(crate) fn new(stops: &[String]) -> Self {
        // An empty stop string would match at once; it means nothing, so it is dropped.
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            max_len,
            searched: 0,
        }
    }

    /// Byte offset where the earliest stop string starts, if `text` (the whole text so far)
    /// now contains one.
    pub(crate) fn scan(&mut self, text: &str) -> Option<usize> {
        if self.stops.is_empty() {
            return None;
        }
        // A new match must end after `searched`, so it starts at most max_len-1 bytes before.
        let from = floor_char_boundary(text, self.searched.saturating_sub(self.max_len - 1));
        let hit = self
            .stops
            .iter()
            .filter_map(|s| text[from..].find(s.as_str()))
            .min();
        self.searched = text.len();
        hit.map(|i| from + i)
    }

    /// How much of `text` can be shown to a streaming reader: everything except a tail that
    /// might still turn out to be the start of a stop string.
    pub(crate) fn safe_len(&self, text: &str) -> usize {
        let hold = self.max_len.saturating_sub(1);
        floor_char_boundary(text, text.len().saturating_sub(hold))
    }
}

/// A chat message as the model's template sees it: a role it knows and plain content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateMessage {
    pub(crate) role: &'static str,
    pub(crate) content: String,
}

/// Maps messages onto the roles every chat template knows.
///
/// This backend speaks the tagged plain-text protocol, so tool traffic is shown as text:
/// tool results become user turns ("Tool result: ...", since many templates have no `tool`
/// role) and an assistant's tool calls are appended to its content. NUL bytes are dropped
/// because llama.cpp takes C strings.
pub(crate) fn template_messages(messages: &[Message]) -> Vec<TemplateMessage> {
    messages
        .iter()
        .map(|m| {
            let (role, mut content) = match m.role {
                Role::System => ("system", m.content.clone()),
                Role::User => ("user", m.content.clone()),
                Role::Assistant => ("assistant", m.content.clone()),
                Role::Tool => {
                    let label = match &m.tool_call_id {
                        Some(id) if !id.is_empty() => format!("Tool result ({id}): "),
                        _ => "Tool result: ".to_owned(),
                    };
                    ("user", format!("{label}{}", m.content))
                }
            };
            for call in &m.tool_calls {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&format!("Tool call {}: {}", call.name, call.arguments));
            }
            content.retain(|c| c != '\0');
            TemplateMessage { role, content }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sleeptime_model::ToolCall;

    #[test]
    fn utf8_prefix_waits_for_the_rest_of_a_character() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut bytes = b"price: ".to_vec();
        bytes.extend_from_slice(&euro[..2]);
        assert_eq!(valid_utf8_prefix(&bytes), "price: ");
        bytes.push(euro[2]);
        assert_eq!(valid_utf8_prefix(&bytes), "price: €");
    }

    #[test]
    fn char_boundary_rounds_down() {
        let s = "a€b";
        assert_eq!(floor_char_boundary(s, 0), 0);
        assert_eq!(floor_char_boundary(s, 2), 1);
        assert_eq!(floor_char_boundary(s, 4), 4);
        assert_eq!(floor_char_boundary(s, 99), s.len());
    }

    #[test]
    fn stop_scanner_finds_matches_split_across_tokens() {
        let mut scan = StopScanner::new(&["</answer>".to_owned(), String::new()]);
        let mut text = String::new();
        let mut found = None;
        for piece in ["The ", "result </an", "swer", "> tail"] {
            text.push_str(piece);
            if let Some(i) = scan.scan(&text) {
                found = Some(i);
                break;
            }
        }
        assert_eq!(found, Some("The result ".len()));
    }

    #[test]
    fn stop_scanner_picks_the_earliest_and_ignores_empty() {
        let mut scan = StopScanner::new(&["b".to_owned(), "ab".to_owned(), String::new()]);
        assert_eq!(scan.scan("xxab"), Some(2));
        let mut none = StopScanner::new(&[String::new()]);
        assert_eq!(none.scan("anything"), None);
        assert_eq!(none.safe_len("anything"), 8);
    }

    #[test]
    fn safe_len_holds_back_a_possible_stop_start() {
        let scan = StopScanner::new(&["STOP".to_owned()]);
        assert_eq!(scan.safe_len("hello ST"), 5);
        assert_eq!(scan.safe_len("ab"), 0);
        // Never splits a character.
        assert_eq!(scan.safe_len("x€yz"), 1);
    }

    #[test]
    fn tool_messages_become_user_text() {
        let mut asst = Message::assistant("Let me look.");
        asst.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "search".into(),
            arguments: "{\"q\":1}".into(),
        });
        let msgs = vec![
            Message::system("sys\0tem"),
            asst,
            Message::tool("c1", "42"),
            Message::new(Role::Tool, "7"),
        ];
        let out = template_messages(&msgs);
        assert_eq!(
            out[0],
            TemplateMessage {
                role: "system",
                content: "system".into()
            }
        );
        assert_eq!(out[1].role, "assistant");
        assert_eq!(out[1].content, "Let me look.\nTool call search: {\"q\":1}");
        assert_eq!(
            out[2],
            TemplateMessage {
                role: "user",
                content: "Tool result (c1): 42".into()
            }
        );
        assert_eq!(out[3].content, "Tool result: 7");
    }
}
