//! EventBridge events delivered through the interruption queue (SQS), parsed into
//! [`ProviderEventKind`]s. Pure: no I/O, no clock (deadlines come from the event's own time).
//!
//! Formats (the EventBridge schemas `aws.ec2@…` and `aws.health@AWSHealthEvent`):
//! - `EC2 Spot Instance Interruption Warning`: `detail.instance-id`, `detail.instance-action`
//!   (`terminate` / `stop` / `hibernate` — the *action*, not a time). The instance goes two
//!   minutes after the event, so the deadline is the event `time` + 120 s.
//! - `EC2 Instance Rebalance Recommendation`: `detail.instance-id`.
//! - `EC2 Instance State-change Notification`: `detail.instance-id`, `detail.state`.
//! - `AWS Health Event` with `detail.service = EC2` and `detail.eventTypeCategory =
//!   scheduledChange` (retirement, maintenance): one event per `detail.affectedEntities[].
//!   entityValue` that is an instance id, at `detail.startTime` (an HTTP date such as
//!   `Sat, 05 Jun 2016 15:10:09 GMT`; RFC 3339 accepted too).
//!
//! A body can also be an SNS notification wrapping the event (`Type: Notification`,
//! `Message: "<event JSON>"`), as when the rule targets an SNS topic subscribed by the queue.
//!
//! Range checks (the body is untrusted input): every time must be a finite number or date in
//! [`Timestamp::MIN_EXTERNAL`]..=[`Timestamp::MAX_EXTERNAL`] ([`parse_body`]), and, against the
//! receiver's clock ([`parse_body_at`]), a spot deadline may lie at most [`MAX_CLOCK_SKEW_S`]
//! in the past and [`MAX_SPOT_AHEAD_S`] ahead, a scheduled change at most
//! [`MAX_SCHEDULED_AHEAD_S`] ahead. Anything else is [`Parsed::Malformed`] with the reason:
//! not acted on, not deleted, left for the redrive policy.

use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use gpupool_provider::{InstanceId, ProviderEvent, ProviderEventKind, Timestamp};
use serde_json::Value;

pub const SOURCE_EC2: &str = "aws.ec2";
pub const SOURCE_HEALTH: &str = "aws.health";
pub const DETAIL_SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
pub const DETAIL_REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
pub const DETAIL_STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const DETAIL_HEALTH: &str = "AWS Health Event";

/// The EventBridge rules the interruption queue must receive: (source, detail-type).
pub const EVENTBRIDGE_RULES: &[(&str, &str)] = &[
    (SOURCE_EC2, DETAIL_SPOT_INTERRUPTION),
    (SOURCE_EC2, DETAIL_REBALANCE),
    (SOURCE_EC2, DETAIL_STATE_CHANGE),
    (SOURCE_HEALTH, DETAIL_HEALTH),
];

/// AWS's spot interruption notice period.
pub const SPOT_NOTICE_S: f64 = 120.0;

/// How far in the past an event's deadline may lie and still be acted on: clock skew between
/// EventBridge and this host, plus a poll interval. Older deadlines have passed (the instance
/// is gone or going; its state-change event closes the books) — acting on one would terminate
/// at once in the same tick.
pub const MAX_CLOCK_SKEW_S: f64 = 60.0;
/// A spot deadline is the event time + [`SPOT_NOTICE_S`]: one more than an hour ahead is not a
/// two-minute notice (a forged or corrupted `time`).
pub const MAX_SPOT_AHEAD_S: f64 = 3600.0;
/// AWS Health announces scheduled changes ahead of time; for planned lifecycle events "a
/// minimum of 180 days for major changes" (AWS Batch User Guide, "AWS Health Planned lifecycle
/// events"); EC2 retirement notices come weeks ahead. The docs name no maximum: a year bounds it.
pub const MAX_SCHEDULED_AHEAD_S: f64 = 366.0 * 86_400.0;

/// What one queue message means.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// Act on these (usually one; a health event can name several instances).
    Events(Vec<ProviderEventKind>),
    /// A well-formed event gpupool has no use for (a health event about another service, a
    /// health issue that is not a scheduled change). Safe to delete.
    Ignored(&'static str),
    /// Not JSON, not an event, an unknown detail-type, or a known one missing a field. Must
    /// not be deleted: the queue's redrive policy moves it to the dead-letter queue for a
    /// person to look at.
    Malformed(String),
}

/// Parse one SQS message body and check its times against `now` (the receiver's clock): the
/// entry point for messages read from the queue.
pub fn parse_body_at(body: &str, now: Timestamp) -> Parsed {
    match parse_body(body) {
        Parsed::Events(kinds) => match kinds.iter().try_for_each(|k| check_window(k, now)) {
            Ok(()) => Parsed::Events(kinds),
            Err(why) => Parsed::Malformed(why),
        },
        other => other,
    }
}

/// Is the event's time one gpupool may act on at `now`?
pub fn check_window(kind: &ProviderEventKind, now: Timestamp) -> Result<(), String> {
    let (what, t, ahead) = match kind {
        ProviderEventKind::SpotInterruption { deadline, .. } => {
            ("spot interruption deadline", *deadline, MAX_SPOT_AHEAD_S)
        }
        ProviderEventKind::ScheduledChange { at, .. } => {
            ("scheduled change start", *at, MAX_SCHEDULED_AHEAD_S)
        }
        _ => return Ok(()),
    };
    let lead_s = t.secs_since(now);
    if lead_s < -MAX_CLOCK_SKEW_S {
        Err(format!(
            "{what} {t} is {:.0} s in the past (more than {MAX_CLOCK_SKEW_S} s): not acted on",
            -lead_s
        ))
    } else if lead_s > ahead {
        Err(format!(
            "{what} {t} is {lead_s:.0} s ahead (more than {ahead} s): not a real notice"
        ))
    } else {
        Ok(())
    }
}

/// Parse one SQS message body (pure: times are range-checked, not compared with a clock).
pub fn parse_body(body: &str) -> Parsed {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Parsed::Malformed(format!("not JSON: {e}")),
    };
    // SNS envelope: the event is the string in `Message`.
    if v.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = v.get("Message").and_then(Value::as_str)
    {
        return parse_body(inner);
    }
    parse_event(&v)
}

fn parse_event(v: &Value) -> Parsed {
    let Some(source) = v.get("source").and_then(Value::as_str) else {
        return Parsed::Malformed("no `source`: not an EventBridge event".into());
    };
    let Some(detail_type) = v.get("detail-type").and_then(Value::as_str) else {
        return Parsed::Malformed("no `detail-type`: not an EventBridge event".into());
    };
    let Some(detail) = v.get("detail").filter(|d| d.is_object()) else {
        return Parsed::Malformed(format!("{detail_type}: no `detail` object"));
    };
    let instance = || {
        detail
            .get("instance-id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(InstanceId::from)
            .ok_or_else(|| format!("{detail_type}: no `detail.instance-id`"))
    };
    let result = match (source, detail_type) {
        (SOURCE_EC2, DETAIL_SPOT_INTERRUPTION) => instance().and_then(|instance| {
            let time = event_time(v).ok_or_else(|| format!("{detail_type}: no valid `time`"))?;
            let deadline = time
                .checked_plus_secs(SPOT_NOTICE_S)
                .ok_or_else(|| format!("{detail_type}: `time` {time} + 120 s is out of range"))?;
            Ok(vec![ProviderEventKind::SpotInterruption {
                instance,
                deadline,
            }])
        }),
        (SOURCE_EC2, DETAIL_REBALANCE) => {
            instance().map(|instance| vec![ProviderEventKind::RebalanceRecommendation { instance }])
        }
        (SOURCE_EC2, DETAIL_STATE_CHANGE) => instance().and_then(|instance| {
            let state = detail
                .get("state")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{detail_type}: no `detail.state`"))?;
            Ok(vec![ProviderEventKind::InstanceStateChange {
                instance,
                state: state.to_owned(),
            }])
        }),
        (SOURCE_HEALTH, DETAIL_HEALTH) => return parse_health(v, detail),
        _ => Err(format!("unknown event {source} / {detail_type}")),
    };
    match result {
        Ok(kinds) => Parsed::Events(kinds),
        Err(why) => Parsed::Malformed(why),
    }
}

fn parse_health(v: &Value, detail: &Value) -> Parsed {
    let service = detail.get("service").and_then(Value::as_str);
    let category = detail.get("eventTypeCategory").and_then(Value::as_str);
    if service != Some("EC2") {
        return Parsed::Ignored("health event for another service");
    }
    if category != Some("scheduledChange") {
        return Parsed::Ignored("health event that is not a scheduled change");
    }
    let at = match detail.get("startTime") {
        Some(t) => match parse_time(t) {
            Some(at) => at,
            None => return Parsed::Malformed(format!("AWS Health Event: bad `startTime` {t}")),
        },
        // Some scheduled changes carry no start; treat them as due now (the event time).
        None => match event_time(v) {
            Some(at) => at,
            None => {
                return Parsed::Malformed("AWS Health Event: no `startTime` and no `time`".into());
            }
        },
    };
    let Some(entities) = detail.get("affectedEntities").and_then(Value::as_array) else {
        return Parsed::Malformed("AWS Health Event: no `affectedEntities`".into());
    };
    let kinds: Vec<ProviderEventKind> = entities
        .iter()
        .filter_map(|e| e.get("entityValue").and_then(Value::as_str))
        .filter(|id| id.starts_with("i-"))
        .map(|id| ProviderEventKind::ScheduledChange {
            instance: InstanceId::from(id),
            at,
        })
        .collect();
    if kinds.is_empty() {
        Parsed::Ignored("scheduled change affecting no instance")
    } else {
        Parsed::Events(kinds)
    }
}

fn event_time(v: &Value) -> Option<Timestamp> {
    parse_time(v.get("time")?)
}

/// RFC 3339 (`2021-02-18T12:34:56Z`, EventBridge's `time`), the HTTP date AWS Health uses, or
/// a number of epoch seconds (what moto's EventBridge writes into `time`). `None` for anything
/// else, including times outside the checked external range (`1e300`, `-1e300`, year 10000).
fn parse_time(t: &Value) -> Option<Timestamp> {
    if let Some(secs) = t.as_f64() {
        return Timestamp::try_from_secs_f64(secs).ok();
    }
    let s = t.as_str()?.trim();
    let dt = [
        DateTimeFormat::DateTime,
        DateTimeFormat::DateTimeWithOffset,
        DateTimeFormat::HttpDate,
    ]
    .into_iter()
    .find_map(|f| DateTime::from_str(s, f).ok())?;
    dt.to_millis()
        .ok()
        .and_then(|ms| Timestamp::try_from_millis(ms).ok())
}

/// Turn the events of one message into `ProviderEvent`s. Ids are the SQS message id (plus the
/// index when one message yields several, so each is de-duplicated on its own); only the last
/// carries the receipt handle, so the message is deleted after *all* of them were handled.
pub fn to_provider_events(
    message_id: &str,
    receipt_handle: &str,
    kinds: Vec<ProviderEventKind>,
) -> Vec<ProviderEvent> {
    let n = kinds.len();
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| ProviderEvent {
            ack: (i + 1 == n).then(|| receipt_handle.to_owned()),
            id: if n == 1 {
                message_id.to_owned()
            } else {
                format!("{message_id}#{i}")
            },
            kind,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The samples below are the examples of the AWS documentation (EC2 User Guide "Spot
    // Instance interruption notices" / "EC2 instance rebalance recommendations", EventBridge's
    // EC2 state-change example, and the AWS Health scheduled-change example used by
    // aws-node-termination-handler), with the doc's `yyyy-mm-ddThh:mm:ssZ` placeholders
    // filled in.
    const SPOT: &str = r#"{
        "version": "0",
        "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2021-02-18T12:34:56Z",
        "region": "us-east-2",
        "resources": ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
        "detail": {
            "instance-id": "i-1234567890abcdef0",
            "instance-action": "terminate"
        }
    }"#;

    const REBALANCE: &str = r#"{
        "version": "0",
        "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": "EC2 Instance Rebalance Recommendation",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2021-02-18T12:30:00Z",
        "region": "us-east-2",
        "resources": ["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
        "detail": {
            "instance-id": "i-1234567890abcdef0"
        }
    }"#;

    const STATE: &str = r#"{
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2021-11-11T21:29:54Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
        "detail": {
            "instance-id": "i-abcd1111",
            "state": "stopping"
        }
    }"#;

    const HEALTH: &str = r#"{
        "version": "0",
        "id": "7fb65329-1628-4cf3-a740-95fg457h1402",
        "detail-type": "AWS Health Event",
        "source": "aws.health",
        "account": "account id",
        "time": "2016-06-05T06:27:57Z",
        "region": "us-east-1",
        "resources": ["i-12345678"],
        "detail": {
            "eventArn": "arn:aws:health:region::event/id",
            "service": "EC2",
            "eventTypeCode": "AWS_EC2_DEDICATED_HOST_NETWORK_MAINTENANCE_SCHEDULED",
            "eventTypeCategory": "scheduledChange",
            "startTime": "Sat, 05 Jun 2016 15:10:09 GMT",
            "eventDescription": [{
                "language": "en_US",
                "latestDescription": "A description of the event will be provided here"
            }],
            "affectedEntities": [
                {"entityValue": "i-12345678", "tags": {"stage": "prod", "app": "my-app"}},
                {"entityValue": "i-87654321"}
            ]
        }
    }"#;

    fn secs(rfc3339: &str) -> Timestamp {
        let dt = DateTime::from_str(rfc3339, DateTimeFormat::DateTime).unwrap();
        Timestamp::from_millis(dt.to_millis().unwrap())
    }

    #[test]
    fn spot_interruption_deadline_is_event_time_plus_two_minutes() {
        assert_eq!(
            parse_body(SPOT),
            Parsed::Events(vec![ProviderEventKind::SpotInterruption {
                instance: "i-1234567890abcdef0".into(),
                deadline: secs("2021-02-18T12:36:56Z"),
            }])
        );
    }

    #[test]
    fn rebalance_and_state_change() {
        assert_eq!(
            parse_body(REBALANCE),
            Parsed::Events(vec![ProviderEventKind::RebalanceRecommendation {
                instance: "i-1234567890abcdef0".into()
            }])
        );
        assert_eq!(
            parse_body(STATE),
            Parsed::Events(vec![ProviderEventKind::InstanceStateChange {
                instance: "i-abcd1111".into(),
                state: "stopping".into()
            }])
        );
    }

    #[test]
    fn health_scheduled_change_names_every_instance_at_start_time() {
        let at = secs("2016-06-05T15:10:09Z");
        assert_eq!(
            parse_body(HEALTH),
            Parsed::Events(vec![
                ProviderEventKind::ScheduledChange {
                    instance: "i-12345678".into(),
                    at
                },
                ProviderEventKind::ScheduledChange {
                    instance: "i-87654321".into(),
                    at
                },
            ])
        );
    }

    #[test]
    fn health_events_of_other_kinds_are_ignored_not_malformed() {
        let other_service = HEALTH.replace(r#""service": "EC2""#, r#""service": "ECS""#);
        assert!(matches!(parse_body(&other_service), Parsed::Ignored(_)));
        let issue = HEALTH.replace(r#""scheduledChange""#, r#""issue""#);
        assert!(matches!(parse_body(&issue), Parsed::Ignored(_)));
    }

    #[test]
    fn malformed_and_unknown_messages_are_reported_not_dropped() {
        for body in [
            "not json at all",
            "{}",
            r#"{"source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning"}"#,
            // instance id missing
            &SPOT.replace(r#""instance-id": "i-1234567890abcdef0","#, ""),
            // time missing: no deadline can be computed
            &SPOT.replace(r#""time": "2021-02-18T12:34:56Z","#, ""),
            // an event type the queue should not receive
            &STATE.replace(
                "EC2 Instance State-change Notification",
                "EC2 AMI State Change",
            ),
        ] {
            assert!(matches!(parse_body(body), Parsed::Malformed(_)), "{body}");
        }
    }

    #[test]
    fn sns_envelope_and_numeric_time_are_accepted() {
        let wrapped = serde_json::json!({"Type": "Notification", "Message": SPOT}).to_string();
        assert_eq!(parse_body(&wrapped), parse_body(SPOT));
        let numeric = SPOT.replace(r#""2021-02-18T12:34:56Z""#, "1613651696.0");
        assert_eq!(parse_body(&numeric), parse_body(SPOT));
    }

    #[test]
    fn out_of_range_times_are_malformed_not_panics() {
        for t in [
            "1e300",
            "-1e300",
            "-1",
            "253402300800",
            "1.7976931348623157e308",
            r#""+275760-09-13T00:00:00Z""#,
            r#""-000001-01-01T00:00:00Z""#,
        ] {
            let body = SPOT.replace(r#""2021-02-18T12:34:56Z""#, t);
            assert!(
                matches!(parse_body(&body), Parsed::Malformed(_)),
                "time {t}: {:?}",
                parse_body(&body)
            );
            let health = HEALTH.replace(r#""Sat, 05 Jun 2016 15:10:09 GMT""#, t);
            assert!(matches!(parse_body(&health), Parsed::Malformed(_)), "{t}");
        }
        // The last second representable is accepted by the parser; the window rejects it.
        let body = SPOT.replace(r#""2021-02-18T12:34:56Z""#, "253402300000");
        assert!(matches!(parse_body(&body), Parsed::Events(_)));
    }

    #[test]
    fn deadlines_outside_the_window_are_rejected_with_a_reason() {
        let event = secs("2021-02-18T12:34:56Z");
        // On time: the deadline is 120 s ahead.
        assert!(matches!(parse_body_at(SPOT, event), Parsed::Events(_)));
        // Read late but within the skew allowance.
        assert!(matches!(
            parse_body_at(SPOT, event.plus_secs(170.0)),
            Parsed::Events(_)
        ));
        // The deadline long passed: would terminate at once.
        match parse_body_at(SPOT, event.plus_secs(600.0)) {
            Parsed::Malformed(why) => assert!(why.contains("in the past"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A "two-minute" notice two hours ahead of the receiver's clock.
        match parse_body_at(SPOT, event.plus_secs(-7200.0)) {
            Parsed::Malformed(why) => assert!(why.contains("ahead"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Scheduled changes may be announced months ahead, not decades.
        let start = secs("2016-06-05T15:10:09Z");
        assert!(matches!(
            parse_body_at(HEALTH, start.plus_secs(-30.0 * 86_400.0)),
            Parsed::Events(_)
        ));
        assert!(matches!(
            parse_body_at(HEALTH, start.plus_secs(-20.0 * 366.0 * 86_400.0)),
            Parsed::Malformed(_)
        ));
        // Events without a time are not windowed; ignored ones stay ignored.
        assert!(matches!(
            parse_body_at(REBALANCE, Timestamp::from_secs(0)),
            Parsed::Events(_)
        ));
        let other = HEALTH.replace(r#""service": "EC2""#, r#""service": "ECS""#);
        assert!(matches!(
            parse_body_at(&other, Timestamp::from_secs(0)),
            Parsed::Ignored(_)
        ));
    }

    #[test]
    fn parsing_is_pure_and_repeatable() {
        // Duplicate deliveries must parse identically (the controller dedupes by id).
        assert_eq!(parse_body(HEALTH), parse_body(HEALTH));
    }

    #[test]
    fn multi_event_messages_ack_once_after_the_last() {
        let Parsed::Events(kinds) = parse_body(HEALTH) else {
            panic!("health parses")
        };
        let evs = to_provider_events("m-1", "rh-1", kinds);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].id, "m-1#0");
        assert_eq!(evs[0].ack, None);
        assert_eq!(evs[1].id, "m-1#1");
        assert_eq!(evs[1].ack.as_deref(), Some("rh-1"));
        let Parsed::Events(kinds) = parse_body(SPOT) else {
            panic!("spot parses")
        };
        let evs = to_provider_events("m-2", "rh-2", kinds);
        assert_eq!(
            (evs[0].id.as_str(), evs[0].ack.as_deref()),
            ("m-2", Some("rh-2"))
        );
    }
}
