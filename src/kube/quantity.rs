//! Kubernetes resource quantities (`500m`, `4Gi`, `1.5`, `1e3`) as numbers.
//!
//! gpupool needs only three readings of a quantity: CPU in millicores, memory in MiB and whole
//! counts of extended resources (GPUs, MIG slices). Parsing to `f64` is exact enough for all of
//! them (integers below 2^53, millicores below 2^53/1000).

/// The value of a quantity string, or `None` when it is not a valid quantity.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    // Split the number from its suffix: the number is sign, digits and at most one '.'.
    let num_end = q
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '+' || c == '-') && i == 0)))
        .map_or(q.len(), |(i, _)| i);
    let (num, suffix) = q.split_at(num_end);
    let base: f64 = num.parse().ok()?;
    // Sub-unit suffixes divide rather than multiply by 1e-9 etc.: `250n` must read as exactly
    // the f64 nearest 250e-9, not 250 × (an inexact 1e-9).
    let v = match suffix {
        "" => base,
        "n" => base / 1e9,
        "u" => base / 1e6,
        "m" => base / 1e3,
        "k" => base * 1e3,
        "M" => base * 1e6,
        "G" => base * 1e9,
        "T" => base * 1e12,
        "P" => base * 1e15,
        "E" => base * 1e18,
        "Ki" => base * 1024.0,
        "Mi" => base * 1024f64.powi(2),
        "Gi" => base * 1024f64.powi(3),
        "Ti" => base * 1024f64.powi(4),
        "Pi" => base * 1024f64.powi(5),
        "Ei" => base * 1024f64.powi(6),
        // Decimal exponent: `1e3`, `5E-2`. A bare `E` was handled above as exa.
        s if s.starts_with(['e', 'E']) => {
            let exp = s[1..].parse::<i32>().ok()?;
            if exp < 0 {
                base / 10f64.powi(-exp)
            } else {
                base * 10f64.powi(exp)
            }
        }
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// CPU in millicores, rounded up (the scheduler rounds requests up too).
pub fn cpu_milli(v: f64) -> u64 {
    (v * 1000.0 - 1e-9).ceil().max(0.0) as u64
}

/// Memory in MiB, rounded up so a request is never under-counted.
pub fn memory_mib(bytes: f64) -> u64 {
    (bytes / (1024.0 * 1024.0) - 1e-9).ceil().max(0.0) as u64
}

/// A count of an extended resource (GPUs, slices). Extended resources are integers by API
/// validation; anything else is rounded up.
pub fn count(v: f64) -> u32 {
    (v - 1e-9).ceil().clamp(0.0, u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suffixes_kubernetes_accepts() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("1.5"), Some(1.5));
        assert_eq!(parse("4Gi"), Some(4.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("100k"), Some(1e5));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("2E"), Some(2e18));
        assert_eq!(parse("250n"), Some(250e-9));
        assert_eq!(parse(""), None);
        assert_eq!(parse("4 cores"), None);
        assert_eq!(parse("1Zi"), None);
    }

    #[test]
    fn rounds_up_to_the_units_the_planner_uses() {
        assert_eq!(cpu_milli(parse("500m").unwrap()), 500);
        assert_eq!(cpu_milli(parse("1.0005").unwrap()), 1001);
        assert_eq!(memory_mib(parse("1Gi").unwrap()), 1024);
        assert_eq!(memory_mib(parse("1G").unwrap()), 954);
        assert_eq!(count(parse("8").unwrap()), 8);
    }
}
