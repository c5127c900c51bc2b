//! The message area's rules: infos expire, the same sentence posted again
//! collapses into one line with a count, and a newer report on the same thing
//! (a run's outcome, an edit's outcome) replaces the older one.

use std::time::{Duration, Instant};

/// Infos disappear after this long; errors stay until dismissed.
pub const INFO_LIFETIME: Duration = Duration::from_secs(12);
/// At most this many messages are shown; the oldest go first.
const SHOWN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Error,
}

/// What a message reports on, so that a newer report on the same thing replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Other,
    /// How the last generation ended: cancelled or failed.
    Run,
    /// How the last photo edit ended.
    Edit,
}

/// A sentence shown at the top of the window.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
    /// How many times the sentence was posted while shown.
    pub count: usize,
    topic: Topic,
    posted: Instant,
}

#[derive(Default)]
pub struct Messages {
    list: Vec<Message>,
}

impl Messages {
    pub fn list(&self) -> &[Message] {
        &self.list
    }

    /// Shows `text`; a sentence already shown moves to the end and counts up instead of stacking.
    pub fn post(&mut self, kind: MessageKind, topic: Topic, text: String, now: Instant) {
        let message = match self.list.iter().position(|m| m.kind == kind && m.text == text) {
            Some(index) => {
                let old = self.list.remove(index);
                Message { count: old.count + 1, posted: now, ..old }
            }
            None => {
                self.clear(topic);
                Message { kind, text, count: 1, topic, posted: now }
            }
        };
        self.list.push(message);
        if self.list.len() > SHOWN {
            self.list.remove(0);
        }
    }

    /// Removes the reports on `topic`, e.g. an old "Cancelled…" once a run finishes.
    pub fn clear(&mut self, topic: Topic) {
        if topic != Topic::Other {
            self.list.retain(|m| m.topic != topic);
        }
    }

    pub fn dismiss(&mut self, index: usize) {
        if index < self.list.len() {
            self.list.remove(index);
        }
    }

    /// Drops the infos older than [`INFO_LIFETIME`]; returns how long until the next one goes.
    pub fn expire(&mut self, now: Instant) -> Option<Duration> {
        let age = |m: &Message| now.saturating_duration_since(m.posted);
        self.list.retain(|m| m.kind == MessageKind::Error || age(m) < INFO_LIFETIME);
        self.list.iter().filter(|m| m.kind == MessageKind::Info).map(|m| INFO_LIFETIME - age(m)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(messages: &Messages) -> Vec<(&str, usize)> {
        messages.list().iter().map(|m| (m.text.as_str(), m.count)).collect()
    }

    #[test]
    fn the_same_sentence_collapses_into_one_line_with_a_count() {
        let (mut messages, now) = (Messages::default(), Instant::now());
        for _ in 0..4 {
            messages.post(MessageKind::Info, Topic::Other, "the prompt was cut to 77 tokens".into(), now);
        }
        messages.post(MessageKind::Error, Topic::Other, "autosave failed".into(), now);
        messages.post(MessageKind::Info, Topic::Other, "the prompt was cut to 77 tokens".into(), now);
        assert_eq!(texts(&messages), vec![("autosave failed", 1), ("the prompt was cut to 77 tokens", 5)]);
    }

    #[test]
    fn a_new_report_on_a_topic_replaces_the_old_one_and_clearing_removes_it() {
        let (mut messages, now) = (Messages::default(), Instant::now());
        messages.post(MessageKind::Info, Topic::Other, "Opened mask.png".into(), now);
        messages.post(MessageKind::Info, Topic::Run, "Cancelled after step 2 of 40".into(), now);
        messages.post(MessageKind::Error, Topic::Run, "generation failed: out of memory".into(), now);
        assert_eq!(texts(&messages), vec![("Opened mask.png", 1), ("generation failed: out of memory", 1)]);
        messages.clear(Topic::Run);
        messages.clear(Topic::Other);
        assert_eq!(texts(&messages), vec![("Opened mask.png", 1)], "Other is never cleared wholesale");
    }

    #[test]
    fn infos_expire_and_errors_stay_until_dismissed() {
        let (mut messages, start) = (Messages::default(), Instant::now());
        messages.post(MessageKind::Info, Topic::Other, "Saved mask.png".into(), start);
        messages.post(MessageKind::Error, Topic::Other, "cannot write mask.png".into(), start);
        let later = start + Duration::from_secs(5);
        messages.post(MessageKind::Info, Topic::Other, "Opened a.png".into(), later);
        assert_eq!(messages.expire(later), Some(INFO_LIFETIME - Duration::from_secs(5)), "the first info goes first");
        assert_eq!(messages.expire(start + INFO_LIFETIME), Some(Duration::from_secs(5)));
        assert_eq!(texts(&messages), vec![("cannot write mask.png", 1), ("Opened a.png", 1)]);
        assert_eq!(messages.expire(later + INFO_LIFETIME), None);
        assert_eq!(texts(&messages), vec![("cannot write mask.png", 1)]);
        messages.dismiss(0);
        assert!(messages.list().is_empty());
    }
}
