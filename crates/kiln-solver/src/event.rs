//! Progress events. They are plain data so the CLI can render them live, as CI logs, or
//! as JSON lines (`--progress json`): one [`Event`] serialises to one JSON object.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Something that happened to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<K> {
    /// Wall-clock time, RFC 3339 in JSON; for humans and log correlation.
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    /// Monotonic time since the solve started (seconds in JSON); for durations and
    /// ordering, which wall-clock time cannot be trusted with.
    #[serde(with = "secs")]
    pub offset: Duration,
    pub key: K,
    /// Human description from [`crate::Worker::describe`], shared by all the job's events.
    pub description: Arc<str>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What happened. In JSON the variant is the `"kind"` field next to the event's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The job is reachable from a target and will run once its inputs are done. Every
    /// queued job is announced before any starts, so a renderer knows the total.
    Queued,
    /// The job was handed to a worker thread.
    Started,
    /// The worker found the result in its cache (reported by the worker, which alone
    /// knows); a `Done` follows.
    Cached {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Output of the job's process. Chunks are as read, not split into lines; JSON
    /// carries them as (lossily decoded) UTF-8 text, which is what a log reader wants.
    Log {
        stream: Stream,
        #[serde(with = "lossy_text")]
        data: Vec<u8>,
    },
    /// A one-line status from the worker ("pulling layer 2/5").
    Status { text: String },
    /// The job succeeded. `exec_time` is the time spent in the user's process (RUN)
    /// as reported by the worker; `duration - exec_time` is kiln's own overhead.
    Done {
        #[serde(with = "secs")]
        duration: Duration,
        #[serde(default, with = "opt_secs", skip_serializing_if = "Option::is_none")]
        exec_time: Option<Duration>,
    },
    /// The job failed; this is the failure that stops the build unless a cancellation
    /// came first.
    Failed { error: String },
    /// The job was running when the build was cancelled and returned without a result.
    Cancelled,
}

impl EventKind {
    /// Whether no further event for this job will follow.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::Done { .. } | EventKind::Failed { .. } | EventKind::Cancelled
        )
    }
}

mod rfc3339 {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let text = OffsetDateTime::from(*t)
            .format(&Rfc3339)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        let t = OffsetDateTime::parse(&text, &Rfc3339).map_err(D::Error::custom)?;
        Ok(t.into())
    }
}

mod secs {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(D::Error::custom)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::secs::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(v) => Duration::try_from_secs_f64(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

mod lossy_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event<String> {
        Event {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            offset: Duration::from_millis(1500),
            key: "sha256:ab".into(),
            description: "[build 2/4] RUN make".into(),
            kind,
        }
    }

    #[test]
    fn json_is_one_flat_object_per_event() {
        let j = serde_json::to_string(&ev(EventKind::Done {
            duration: Duration::from_millis(1200),
            exec_time: Some(Duration::from_millis(1000)),
        }))
        .unwrap();
        assert_eq!(
            j,
            r#"{"time":"2023-11-14T22:13:20.25Z","offset":1.5,"key":"sha256:ab","description":"[build 2/4] RUN make","kind":"done","duration":1.2,"exec_time":1.0}"#
        );
        let j = serde_json::to_string(&ev(EventKind::Log {
            stream: Stream::Stderr,
            data: b"warn\n".to_vec(),
        }))
        .unwrap();
        assert!(
            j.ends_with(r#""kind":"log","stream":"stderr","data":"warn\n"}"#),
            "{j}"
        );
        let j = serde_json::to_string(&ev(EventKind::Cached { reason: None })).unwrap();
        assert!(j.ends_with(r#""kind":"cached"}"#), "{j}");
    }

    #[test]
    fn json_round_trips() {
        for kind in [
            EventKind::Queued,
            EventKind::Started,
            EventKind::Cached {
                reason: Some("local".into()),
            },
            EventKind::Status {
                text: "pulling".into(),
            },
            EventKind::Done {
                duration: Duration::from_millis(3),
                exec_time: None,
            },
            EventKind::Failed {
                error: "exit 2".into(),
            },
            EventKind::Cancelled,
        ] {
            let e = ev(kind);
            let back: Event<String> =
                serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
    }
}
