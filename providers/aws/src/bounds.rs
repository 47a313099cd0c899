//! Range checks on numbers and times as they arrive from the Auto Scaling and EC2 APIs, before
//! anything is planned on them. A group whose sizes are out of range is an error naming the
//! group and the field: its view is unreadable this tick (the controller keeps its last good
//! view for a bounded time and holds scale-down), never read as zero. A time out of range is
//! treated as unknown.

use gpupool_provider::Timestamp;

/// Largest size accepted for a group's min, max or desired capacity. The Auto Scaling API
/// reference types them as plain integers and documents no upper bound; the account's instance
/// quotas keep real groups far below this. A larger value is not a fleet gpupool can plan for
/// (the planner's work grows with the instances it considers), so it is refused.
pub const MAX_GROUP_SIZE: u32 = 10_000;

/// A field of a cloud reply gpupool refuses to plan on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("group {group}: {field} {problem}")]
pub struct FieldError {
    pub group: String,
    pub field: &'static str,
    pub problem: FieldProblem,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("is missing (the API reference marks it required)")]
    Missing,
    #[error("is {0}, outside 0..={MAX_GROUP_SIZE}")]
    OutOfRange(i64),
    #[error("is {value}, below the group's MinSize {min}")]
    BelowMin { value: u32, min: u32 },
    #[error("is {value}, above the group's MaxSize {max}")]
    AboveMax { value: u32, max: u32 },
}

/// Checked `(min, max, desired)` of a group: each present, within `0..=MAX_GROUP_SIZE`, and
/// `min <= desired <= max` (the API's own invariant, `UpdateAutoScalingGroup`: "The desired
/// capacity must be equal to or greater than the minimum size and equal to or less than the
/// maximum size").
pub fn check_sizes(
    group: &str,
    min: Option<i32>,
    max: Option<i32>,
    desired: Option<i32>,
) -> Result<(u32, u32, u32), FieldError> {
    let err = |field, problem| FieldError {
        group: group.to_owned(),
        field,
        problem,
    };
    let one = |field: &'static str, v: Option<i32>| -> Result<u32, FieldError> {
        let v = v.ok_or_else(|| err(field, FieldProblem::Missing))?;
        u32::try_from(v)
            .ok()
            .filter(|v| *v <= MAX_GROUP_SIZE)
            .ok_or_else(|| err(field, FieldProblem::OutOfRange(i64::from(v))))
    };
    let (min, max, desired) = (
        one("MinSize", min)?,
        one("MaxSize", max)?,
        one("DesiredCapacity", desired)?,
    );
    if max < min {
        return Err(err("MaxSize", FieldProblem::BelowMin { value: max, min }));
    }
    if desired < min {
        return Err(err(
            "DesiredCapacity",
            FieldProblem::BelowMin {
                value: desired,
                min,
            },
        ));
    }
    if desired > max {
        return Err(err(
            "DesiredCapacity",
            FieldProblem::AboveMax {
                value: desired,
                max,
            },
        ));
    }
    Ok((min, max, desired))
}

/// A time from a reply (epoch milliseconds), kept only within
/// [`Timestamp::MIN_EXTERNAL`]..=[`Timestamp::MAX_EXTERNAL`]; otherwise unknown.
pub fn sane_millis(ms: Option<i64>) -> Option<i64> {
    ms.filter(|ms| Timestamp::try_from_millis(*ms).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_field_by_field() {
        use FieldProblem::*;
        let m = MAX_GROUP_SIZE as i32;
        type Case = (
            Option<i32>,
            Option<i32>,
            Option<i32>,
            Result<(u32, u32, u32), (&'static str, FieldProblem)>,
        );
        let table: Vec<Case> = vec![
            (Some(0), Some(4), Some(2), Ok((0, 4, 2))),
            (Some(0), Some(0), Some(0), Ok((0, 0, 0))),
            (Some(1), Some(m), Some(m), Ok((1, m as u32, m as u32))),
            (None, Some(4), Some(2), Err(("MinSize", Missing))),
            (Some(0), None, Some(2), Err(("MaxSize", Missing))),
            (Some(0), Some(4), None, Err(("DesiredCapacity", Missing))),
            (Some(-1), Some(4), Some(2), Err(("MinSize", OutOfRange(-1)))),
            (
                Some(0),
                Some(i32::MAX),
                Some(2),
                Err(("MaxSize", OutOfRange(i32::MAX as i64))),
            ),
            (
                Some(0),
                Some(4),
                Some(i32::MIN),
                Err(("DesiredCapacity", OutOfRange(i32::MIN as i64))),
            ),
            (
                Some(0),
                Some(m + 1),
                Some(2),
                Err(("MaxSize", OutOfRange(m as i64 + 1))),
            ),
            (
                Some(5),
                Some(4),
                Some(4),
                Err(("MaxSize", BelowMin { value: 4, min: 5 })),
            ),
            (
                Some(2),
                Some(4),
                Some(1),
                Err(("DesiredCapacity", BelowMin { value: 1, min: 2 })),
            ),
            (
                Some(0),
                Some(4),
                Some(7),
                Err(("DesiredCapacity", AboveMax { value: 7, max: 4 })),
            ),
        ];
        for (min, max, desired, want) in table {
            let got = check_sizes("g", min, max, desired);
            match want {
                Ok(v) => assert_eq!(got, Ok(v), "{min:?} {max:?} {desired:?}"),
                Err((field, problem)) => {
                    let e = got.unwrap_err();
                    assert_eq!((e.field, &e.problem), (field, &problem));
                    assert!(
                        e.to_string().starts_with(&format!("group g: {field} ")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn times_out_of_range_are_unknown() {
        let table = [
            (None, None),
            (Some(0), Some(0)),
            (Some(1_700_000_000_000), Some(1_700_000_000_000)),
            (Some(-1), None),
            (Some(i64::MIN), None),
            (Some(i64::MAX), None),
            (Some(253_402_300_799_001), None),
        ];
        for (ms, want) in table {
            assert_eq!(sane_millis(ms), want, "{ms:?}");
        }
    }
}
