//! `rateLimit` and `flowSampling`, checked and narrowed for the datapath.
//! The same bounds as the CRD schema, with errors naming the field.

use serde::{Deserialize, Serialize};

use crate::api::shaping::{
    BYTES_PER_SECOND_RANGE, FlowSampling, ONE_IN_RANGE, PACKETS_PER_SECOND_RANGE, PERCENT_RANGE, RateLimit,
};
use crate::error::ModelError;

/// A per-node cap on a session's copies; at least one of the two is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateCap {
    pub packets_per_second: Option<u64>,
    pub bytes_per_second: Option<u64>,
}

/// The share of flows mirrored: `numerator / denominator`, below one
/// (sampling every flow is no sampling and compiles to `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowShare {
    pub numerator: u32,
    pub denominator: u32,
}

impl FlowShare {
    /// A flow is mirrored when its 32-bit flow hash is below this
    /// (`floor(2^32 * share)`, always below 2^32).
    pub fn threshold(&self) -> u32 {
        let t = (1u64 << 32) * u64::from(self.numerator) / u64::from(self.denominator.max(1));
        u32::try_from(t).unwrap_or(u32::MAX)
    }

    /// Whether the flow with this hash is mirrored.
    pub fn samples(&self, flow_hash: u32) -> bool {
        flow_hash < self.threshold()
    }
}

fn ranged(value: i64, (low, high): (i64, i64), field: &str) -> Result<u64, ModelError> {
    if !(low..=high).contains(&value) {
        return Err(ModelError::invalid(field, format!("{value} is out of range {low}..={high}")));
    }
    u64::try_from(value).map_err(|_| ModelError::invalid(field, format!("{value} is negative")))
}

/// `rateLimit` at `prefix.rateLimit`.
pub fn check_rate_limit(limit: Option<&RateLimit>, prefix: &str) -> Result<Option<RateCap>, ModelError> {
    let Some(limit) = limit else { return Ok(None) };
    let field = format!("{prefix}.rateLimit");
    if limit.packets_per_second.is_none() && limit.bytes_per_second.is_none() {
        return Err(ModelError::invalid(field, "needs packetsPerSecond, bytesPerSecond or both"));
    }
    let pps = limit
        .packets_per_second
        .map(|v| ranged(v, PACKETS_PER_SECOND_RANGE, &format!("{field}.packetsPerSecond")))
        .transpose()?;
    let bps = limit
        .bytes_per_second
        .map(|v| ranged(v, BYTES_PER_SECOND_RANGE, &format!("{field}.bytesPerSecond")))
        .transpose()?;
    Ok(Some(RateCap { packets_per_second: pps, bytes_per_second: bps }))
}

/// `flowSampling` at `prefix.flowSampling`; `None` when every flow is mirrored.
pub fn check_flow_sampling(sampling: Option<&FlowSampling>, prefix: &str) -> Result<Option<FlowShare>, ModelError> {
    let Some(sampling) = sampling else { return Ok(None) };
    let field = format!("{prefix}.flowSampling");
    let share = match (sampling.one_in, sampling.percent) {
        (Some(n), None) => {
            let n = ranged(n.into(), ONE_IN_RANGE, &format!("{field}.oneIn"))?;
            FlowShare { numerator: 1, denominator: n as u32 }
        }
        (None, Some(p)) => {
            let p = ranged(p.into(), PERCENT_RANGE, &format!("{field}.percent"))?;
            FlowShare { numerator: p as u32, denominator: 100 }
        }
        _ => return Err(ModelError::invalid(field, "needs exactly one of oneIn or percent")),
    };
    Ok((share.numerator < share.denominator).then_some(share))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_exclusivity_name_the_field() {
        fn err<T: std::fmt::Debug>(r: Result<T, ModelError>) -> String {
            r.expect_err("invalid").to_string()
        }
        let empty = RateLimit::default();
        assert!(err(check_rate_limit(Some(&empty), "spec")).contains("spec.rateLimit"));
        let low = RateLimit { bytes_per_second: Some(999), ..RateLimit::default() };
        assert!(err(check_rate_limit(Some(&low), "spec")).contains("spec.rateLimit.bytesPerSecond"));
        let zero = RateLimit { packets_per_second: Some(0), ..RateLimit::default() };
        assert!(err(check_rate_limit(Some(&zero), "spec")).contains("spec.rateLimit.packetsPerSecond"));
        let both = FlowSampling { one_in: Some(4), percent: Some(25) };
        assert!(err(check_flow_sampling(Some(&both), "spec")).contains("spec.flowSampling"));
        let over = FlowSampling { percent: Some(101), one_in: None };
        assert!(err(check_flow_sampling(Some(&over), "spec")).contains("spec.flowSampling.percent"));
    }

    #[test]
    fn shares_become_hash_thresholds() {
        let quarter = check_flow_sampling(Some(&FlowSampling { one_in: Some(4), percent: None }), "spec")
            .expect("valid")
            .expect("sampling");
        assert_eq!(quarter.threshold(), 1 << 30);
        assert!(quarter.samples(0) && !quarter.samples(1 << 30));
        let pct = check_flow_sampling(Some(&FlowSampling { percent: Some(25), one_in: None }), "spec");
        assert_eq!(pct.expect("valid").map(|s| s.threshold()), Some(1 << 30));
        let all = FlowSampling { percent: Some(100), one_in: None };
        assert_eq!(check_flow_sampling(Some(&all), "spec").expect("valid"), None);
    }
}
