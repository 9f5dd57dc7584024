//! BPF_PROG_TEST_RUN of the veth programs, for the differential test and
//! diagnostics: nothing is copied.

use aya::maps::{Array, MapData};
use aya::programs::{TestRun, TestRunOptions};
use podmirror_crds::model::Direction;

use super::abi::PmDecision;
use super::{Datapath, DatapathError, MAP_DECISION, PROG_EGRESS, PROG_INGRESS, PROG_TEST, classifier, direction_code};

impl Datapath {
    /// Run the veth programs' decision on `frame` with BPF_PROG_TEST_RUN,
    /// as if seen on `ifindex` in `direction`; nothing is copied. For the
    /// differential test and diagnostics.
    pub fn test_decide(
        &mut self,
        ifindex: u32,
        direction: Direction,
        frame: &[u8],
    ) -> Result<PmDecision, DatapathError> {
        // struct __sk_buff up to the end of cb[5]; cb[0] = direction, cb[1] = ifindex.
        let mut ctx = [0u8; 68];
        ctx[48..52].copy_from_slice(&direction_code(direction).to_ne_bytes());
        ctx[52..56].copy_from_slice(&ifindex.to_ne_bytes());
        let prog = classifier(&mut self.ebpf, PROG_TEST)?;
        let opts = TestRunOptions { data_in: Some(frame), ctx_in: Some(&ctx), ..TestRunOptions::new() };
        let result = prog.test_run(opts).map_err(|e| DatapathError::TestRun(e.to_string()))?;
        if result.return_value != 0 {
            return Err(DatapathError::TestRun(format!("program returned {}", result.return_value)));
        }
        let map = self.ebpf.map(MAP_DECISION).ok_or_else(|| DatapathError::TestRun("no decision map".into()))?;
        let decisions: Array<&MapData, PmDecision> =
            Array::try_from(map).map_err(|source| DatapathError::Map { map: MAP_DECISION, source })?;
        decisions.get(&0, 0).map_err(|source| DatapathError::Map { map: MAP_DECISION, source })
    }

    /// Run the production veth program of `direction` on `frame` with
    /// BPF_PROG_TEST_RUN (the interface is the test run's loopback, ifindex 1
    /// of the caller's namespace). Returns the program's return value and the
    /// packet as the program left it, to check that the original is never
    /// changed and always passed on.
    pub fn test_run_veth(&mut self, direction: Direction, frame: &[u8]) -> Result<(u32, Vec<u8>), DatapathError> {
        let name = match direction {
            Direction::Outbound => PROG_INGRESS,
            Direction::Inbound => PROG_EGRESS,
        };
        let prog = classifier(&mut self.ebpf, name)?;
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::new() };
        let result = prog.test_run(opts).map_err(|e| DatapathError::TestRun(e.to_string()))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }
}
