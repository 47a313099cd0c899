//! Small pure helpers: resource URLs, label values, RFC 3339 times.

use gpupool_provider::Timestamp;

/// The last path segment of a Compute resource URL or partial URL
/// (`https://…/zones/us-central1-a/machineTypes/a2-highgpu-1g` → `a2-highgpu-1g`).
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The value after `/<collection>/` in a resource URL (`zones` → `us-central1-a`).
pub fn segment_after<'a>(url: &'a str, collection: &str) -> Option<&'a str> {
    let mut parts = url.split('/');
    while let Some(p) = parts.next() {
        if p == collection {
            return parts.next().filter(|s| !s.is_empty());
        }
    }
    None
}

/// The region of a zone name (`us-central1-a` → `us-central1`).
pub fn region_of_zone(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

/// A `<model>@<version>` string (or a pool name) as a GCP label value: the one encoding shared
/// with Kubernetes labels and the Terraform module's startup script (see
/// [`gpupool_provider::model_cache_label_value`]).
pub use gpupool_provider::model_cache_label_value as encode_label_value;

/// Parse the RFC 3339 times Compute returns (`2026-11-23T07:00:00.123-08:00`, `…Z`) to
/// milliseconds since the epoch. `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
}

/// Format a time as RFC 3339 UTC with milliseconds (`2026-11-23T15:00:00.123Z`), for filters.
pub fn format_rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.millis())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_their_parts() {
        let u = "https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a/instances/vm-1";
        assert_eq!(last_segment(u), "vm-1");
        assert_eq!(segment_after(u, "zones"), Some("us-central1-a"));
        assert_eq!(segment_after(u, "regions"), None);
        assert_eq!(region_of_zone("us-central1-a"), "us-central1");
        assert_eq!(region_of_zone("europe-west4-b"), "europe-west4");
    }

    #[test]
    fn label_values_follow_the_terraform_encoding() {
        assert_eq!(encode_label_value("Llama-70B@v3.1"), "llama-70b_v3_1");
        assert_eq!(encode_label_value(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn rfc3339_parses_offsets_and_fractions() {
        let z = parse_rfc3339("2026-11-23T15:00:00Z").unwrap();
        let pst = parse_rfc3339("2026-11-23T07:00:00.250-08:00").unwrap();
        assert_eq!(pst.millis() - z.millis(), 250);
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01Z"),
            Some(Timestamp::from_secs(1))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z").map(|t| t.millis() % 1000),
            Some(0)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-23 07:00",
            "2026-11-23T07:00:00+8",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        for s in [
            "2026-11-23T15:00:00.123Z",
            "2000-02-29T23:59:59.000Z",
            "1970-01-01T00:00:00.000Z",
        ] {
            let t = parse_rfc3339(s).unwrap();
            assert_eq!(format_rfc3339(t), s);
        }
    }
}
