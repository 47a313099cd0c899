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

/// A `<model>@<version>` string as a GCP label value: GCP allows only lowercase letters, digits,
/// `_` and `-` in values (63 characters at most), so everything else becomes `_` — the same
/// encoding the Terraform module's startup script uses when it labels a warm VM.
pub fn encode_label_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parse the RFC 3339 times Compute returns (`2026-11-23T07:00:00.123-08:00`,
/// `…Z`) to milliseconds since the epoch. `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        // Keep millisecond precision: pad or cut to three digits.
        let ms: String = f.chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let oh: i64 = o.get(1..3)?.parse().ok()?;
            let om: i64 = o.get(4..6)?.parse().ok()?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    Some(Timestamp::from_millis(secs * 1000 + millis))
}

/// Format a time as RFC 3339 UTC with milliseconds (`2026-11-23T15:00:00.123Z`), for filters.
pub fn format_rfc3339(t: Timestamp) -> String {
    let ms = t.millis().rem_euclid(1000);
    let secs = t.millis().div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
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
