//! A parser of `text/event-stream` bodies (Server-Sent Events) as the HTML standard
//! interprets them: lines end in CRLF, LF or CR; `event`, `data`, `id` and `retry`
//! fields; comments start with `:`; one space after the colon is not part of the
//! value; an event is dispatched at a blank line and carries the last event id.
//! <https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>

use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, `message` when the event had none.
    pub event: String,
    /// The `data` lines, joined by `\n`.
    pub data: String,
    /// The last `id` the stream set, by this event or an earlier one ("" if none).
    pub last_event_id: String,
}

/// Turns chunks of a stream into events, however the chunks split lines (or CRLF
/// pairs, or UTF-8 characters).
#[derive(Debug, Default)]
pub struct EventStreamParser {
    /// Bytes of the line not yet ended. Split on bytes: CR and LF never occur inside a
    /// multi-byte UTF-8 character, so a whole line decodes correctly.
    line: Vec<u8>,
    /// The last chunk ended in CR: an LF starting the next one ends no further line.
    after_cr: bool,
    /// Whether the first line was seen (a byte-order mark may start it).
    started: bool,
    event_type: String,
    data: String,
    last_event_id: String,
    retry: Option<Duration>,
}

impl EventStreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser for a reconnection: the stream's last event id carries over.
    pub fn resuming(last_event_id: impl Into<String>) -> Self {
        Self {
            last_event_id: last_event_id.into(),
            ..Self::default()
        }
    }

    /// The last event id the stream set (what a reconnection sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection delay the stream asked for with `retry`, if it did.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Reads a chunk; returns the events it completed, in order. An event still open
    /// when the stream ends (no blank line after it) is never dispatched.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            match rest.first() {
                None => return events,
                Some(b'\n') => rest = &rest[1..],
                Some(_) => {}
            }
            self.after_cr = false;
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line) {
                events.push(event);
            }
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            self.after_cr = rest[end] == b'\r' && end + 1 == rest.len();
            rest = &rest[end + if crlf { 2 } else { 1 }..];
        }
        self.line.extend_from_slice(rest);
        events
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        let text = String::from_utf8_lossy(line);
        let mut line: &str = &text;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the "\n" after the last data line
        Some(SseEvent {
            event: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data,
            last_event_id: self.last_event_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str, id: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    /// Every event of `stream` fed whole, and fed split at every byte position (lines,
    /// CRLF pairs and UTF-8 characters cut in two): the same events either way.
    fn parse(stream: &[u8]) -> Vec<SseEvent> {
        let whole = EventStreamParser::new().feed(stream);
        for cut in 0..=stream.len() {
            let mut parser = EventStreamParser::new();
            let mut split = parser.feed(&stream[..cut]);
            split.extend(parser.feed(&stream[cut..]));
            assert_eq!(split, whole, "cut at byte {cut}");
        }
        let mut parser = EventStreamParser::new();
        let bytewise: Vec<SseEvent> = stream.iter().flat_map(|b| parser.feed(&[*b])).collect();
        assert_eq!(bytewise, whole, "one byte at a time");
        whole
    }

    #[test]
    fn fields_comments_and_the_space_after_the_colon() {
        let events = parse(
            b": a comment\nevent: epoch\nid: 7\ndata: {\"a\":\ndata:  1}\n\n\
              data:no space\nevent:end\n\n",
        );
        assert_eq!(
            events,
            [
                event("epoch", "{\"a\":\n 1}", "7"),
                event("end", "no space", "7"),
            ]
        );
    }

    #[test]
    fn lf_crlf_and_cr_all_end_lines() {
        for ending in ["\n", "\r\n", "\r"] {
            let stream = ["id: 1", "event: a", "data: x", "data: y", "", "data: z", ""]
                .map(|line| format!("{line}{ending}"))
                .concat();
            assert_eq!(
                parse(stream.as_bytes()),
                [event("a", "x\ny", "1"), event("message", "z", "1")],
                "{ending:?}"
            );
        }
        // A CR then LF is one line end, not a line end and a blank line.
        assert_eq!(parse(b"data: a\r\n\r\n"), [event("message", "a", "")]);
        assert_eq!(parse(b"data: a\r\r"), [event("message", "a", "")]);
        assert_eq!(parse(b"data: a\n\r\n"), [event("message", "a", "")]);
        let mut parser = EventStreamParser::new();
        assert!(parser.feed(b"data: a\r").is_empty());
        assert!(parser.feed(b"").is_empty(), "an empty chunk ends nothing");
        assert!(
            parser.feed(b"\n").is_empty(),
            "the LF of a CRLF split by it"
        );
        assert_eq!(parser.feed(b"\n"), [event("message", "a", "")]);
    }

    #[test]
    fn ids_persist_and_events_without_data_are_not_dispatched() {
        let events = parse(
            "\u{feff}id: 3\n\nevent: study\ndata: {}\n\nid\ndata: é\n\nid: 9\0\ndata\n\n"
                .as_bytes(),
        );
        assert_eq!(
            events,
            [
                event("study", "{}", "3"),
                event("message", "é", ""),
                // An id with NUL is ignored; `data` alone is one empty line.
                event("message", "", ""),
            ]
        );
    }

    #[test]
    fn retry_takes_digits_only_and_unfinished_events_wait() {
        let mut parser = EventStreamParser::resuming("41");
        assert!(
            parser
                .feed(b"retry: 1500\nretry: 2s\ndata: half")
                .is_empty()
        );
        assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
        assert_eq!(parser.last_event_id(), "41");
        assert_eq!(
            parser.feed(b"\n\n"),
            [event("message", "half", "41")],
            "dispatched at the blank line"
        );
    }
}
