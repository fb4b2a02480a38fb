//! The sync planner: which command a device gets next, as a pure function of what is known and reported.
//!
//! SPEC section 6. Each step runs at most once per session (a step that failed with `CmdError` is
//! marked done too, and retried in the next session), so a session can never loop.

use serde::{Deserialize, Serialize};

/// A server command that carries work; `SRV_NO_COMMANDS` (0) is the absence of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Step {
    AppInfoGet,
    AppStateGet,
    SettingsGet,
    SettingsPut,
    PolicyPut,
    SubscriptionsPut,
}

/// The command code of "nothing (more) to do".
pub const NO_COMMANDS: i32 = 0;

impl Step {
    /// In planning order.
    pub const ALL: [Step; 6] = [
        Step::AppInfoGet,
        Step::AppStateGet,
        Step::SettingsGet,
        Step::SettingsPut,
        Step::PolicyPut,
        Step::SubscriptionsPut,
    ];

    /// The command code on the wire.
    pub fn code(self) -> i32 {
        match self {
            Step::SettingsGet => 1,
            Step::SettingsPut => 2,
            Step::PolicyPut => 3,
            Step::SubscriptionsPut => 4,
            Step::AppInfoGet => 5,
            Step::AppStateGet => 6,
        }
    }

    pub fn from_code(code: i32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.code() == code)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What the server has stored about a device from earlier results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub info_hash: Option<Vec<u8>>,
    pub state_hash: Option<Vec<u8>>,
    pub settings_hash: Option<Vec<u8>>,
    /// The server holds the device's settings tree (a push needs it as the base for admin changes).
    pub settings_known: bool,
    /// An admin changed this device's settings since they were last pushed.
    pub settings_pending: bool,
    /// The hash the device returned for the last policy push, and the digest of what was pushed.
    pub policy_hash: Option<Vec<u8>>,
    pub policy_digest: Option<Vec<u8>>,
    pub subs_hash: Option<Vec<u8>>,
    pub subs_digest: Option<Vec<u8>>,
}

/// The hashes a device reported in its Heartbeat (`oMaySynchronize`).
#[derive(Debug, Clone, Copy)]
pub struct Reported<'a> {
    pub hash_info: &'a [u8],
    pub hash_state: &'a [u8],
    pub hash_stgs: &'a [u8],
    pub hash_pol: &'a [u8],
    pub hash_sbsc: &'a [u8],
}

/// Digests of the device's effective policy and subscriptions as they are now.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub policy_digest: &'a [u8],
    pub subs_digest: &'a [u8],
}

/// The steps already sent in this session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    done: u8,
}

impl Progress {
    pub fn mark(&mut self, step: Step) {
        self.done |= step.bit();
    }
    pub fn is_done(&self, step: Step) -> bool {
        self.done & step.bit() != 0
    }
}

fn differs(stored: &Option<Vec<u8>>, reported: &[u8]) -> bool {
    stored.as_deref() != Some(reported)
}

/// Whether `step` has work to do, ignoring whether it already ran this session.
pub fn wanted(step: Step, known: &Known, reported: &Reported, current: &Current) -> bool {
    match step {
        Step::AppInfoGet => differs(&known.info_hash, reported.hash_info),
        Step::AppStateGet => differs(&known.state_hash, reported.hash_state),
        Step::SettingsGet => differs(&known.settings_hash, reported.hash_stgs),
        // Without the device's settings a push would replace them with the admin's changes alone.
        Step::SettingsPut => known.settings_pending && known.settings_known,
        Step::PolicyPut => {
            differs(&known.policy_hash, reported.hash_pol)
                || differs(&known.policy_digest, current.policy_digest)
        }
        Step::SubscriptionsPut => {
            differs(&known.subs_hash, reported.hash_sbsc)
                || differs(&known.subs_digest, current.subs_digest)
        }
    }
}

/// The next step to send, or `None` for `SRV_NO_COMMANDS`.
pub fn next_step(
    known: &Known,
    reported: &Reported,
    current: &Current,
    progress: &Progress,
) -> Option<Step> {
    Step::ALL
        .into_iter()
        .find(|&step| !progress.is_done(step) && wanted(step, known, reported, current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reported(h: &[Vec<u8>; 5]) -> Reported<'_> {
        Reported {
            hash_info: &h[0],
            hash_state: &h[1],
            hash_stgs: &h[2],
            hash_pol: &h[3],
            hash_sbsc: &h[4],
        }
    }

    /// What a well-behaved device does with each step: the server learns the reported hashes.
    fn apply(known: &mut Known, step: Step, r: &Reported, c: &Current) {
        match step {
            Step::AppInfoGet => known.info_hash = Some(r.hash_info.to_vec()),
            Step::AppStateGet => known.state_hash = Some(r.hash_state.to_vec()),
            Step::SettingsGet => {
                known.settings_hash = Some(r.hash_stgs.to_vec());
                known.settings_known = true;
            }
            Step::SettingsPut => {
                known.settings_pending = false;
                known.settings_hash = Some(r.hash_stgs.to_vec());
            }
            Step::PolicyPut => {
                known.policy_hash = Some(r.hash_pol.to_vec());
                known.policy_digest = Some(c.policy_digest.to_vec());
            }
            Step::SubscriptionsPut => {
                known.subs_hash = Some(r.hash_sbsc.to_vec());
                known.subs_digest = Some(c.subs_digest.to_vec());
            }
        }
    }

    fn run_session(known: &mut Known, r: &Reported, c: &Current) -> Vec<i32> {
        let mut progress = Progress::default();
        let mut codes = Vec::new();
        while let Some(step) = next_step(known, r, c, &progress) {
            progress.mark(step);
            codes.push(step.code());
            apply(known, step, r, c);
            assert!(codes.len() <= Step::ALL.len());
        }
        codes
    }

    #[test]
    fn first_contact_runs_5_6_1_3_4_then_nothing() {
        let hashes = [
            vec![1; 16],
            vec![2; 16],
            vec![3; 16],
            vec![4; 16],
            vec![5; 16],
        ];
        let r = reported(&hashes);
        let c = Current {
            policy_digest: b"p",
            subs_digest: b"s",
        };
        let mut known = Known::default();
        assert_eq!(run_session(&mut known, &r, &c), vec![5, 6, 1, 3, 4]);
        assert_eq!(run_session(&mut known, &r, &c), Vec::<i32>::new());
    }

    #[test]
    fn each_changed_hash_triggers_exactly_its_command() {
        let base = [
            vec![1; 16],
            vec![2; 16],
            vec![3; 16],
            vec![4; 16],
            vec![5; 16],
        ];
        let c = Current {
            policy_digest: b"p",
            subs_digest: b"s",
        };
        let mut known = Known::default();
        run_session(&mut known, &reported(&base), &c);
        for (i, code) in [(0, 5), (1, 6), (2, 1), (3, 3), (4, 4)] {
            let mut changed = base.clone();
            changed[i] = vec![9; 16];
            let mut k = known.clone();
            assert_eq!(run_session(&mut k, &reported(&changed), &c), vec![code]);
        }
        let mut k = known.clone();
        let c2 = Current {
            policy_digest: b"p2",
            subs_digest: b"s",
        };
        assert_eq!(run_session(&mut k, &reported(&base), &c2), vec![3]);
        let mut k = known.clone();
        k.settings_pending = true;
        assert_eq!(run_session(&mut k, &reported(&base), &c), vec![2]);
    }

    #[test]
    fn settings_are_not_pushed_blind() {
        let mut known = Known {
            settings_pending: true,
            ..Known::default()
        };
        let h = [vec![1], vec![1], vec![1], vec![1], vec![1]];
        let c = Current {
            policy_digest: b"p",
            subs_digest: b"s",
        };
        // A GET comes first and makes the settings known, then the push follows in the same session.
        assert_eq!(
            run_session(&mut known, &reported(&h), &c),
            vec![5, 6, 1, 2, 3, 4]
        );
    }

    fn opt_hash() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(0u8..3, 0..3))
    }

    fn known_strategy() -> impl Strategy<Value = Known> {
        (
            (
                opt_hash(),
                opt_hash(),
                opt_hash(),
                any::<bool>(),
                any::<bool>(),
            ),
            (opt_hash(), opt_hash(), opt_hash(), opt_hash()),
        )
            .prop_map(|((a, b, c, sk, sp), (d, e, f, g))| Known {
                info_hash: a,
                state_hash: b,
                settings_hash: c,
                settings_known: sk,
                settings_pending: sp,
                policy_hash: d,
                policy_digest: e,
                subs_hash: f,
                subs_digest: g,
            })
    }

    fn hash() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..3, 0..3)
    }

    proptest! {
        #[test]
        fn sessions_are_bounded_ordered_and_converge(
            known in known_strategy(),
            h in [hash(), hash(), hash(), hash(), hash()],
            pd in hash(),
            sd in hash(),
            done in any::<u8>(),
        ) {
            let r = reported(&h);
            let c = Current { policy_digest: &pd, subs_digest: &sd };

            // A step already done this session is never sent again, and anything sent was wanted.
            let progress = Progress { done: done & 0x3f };
            if let Some(step) = next_step(&known, &r, &c, &progress) {
                prop_assert!(!progress.is_done(step));
                prop_assert!(wanted(step, &known, &r, &c));
                // Nothing earlier in the order was both pending and wanted.
                for earlier in Step::ALL.into_iter().take_while(|s| *s != step) {
                    prop_assert!(progress.is_done(earlier) || !wanted(earlier, &known, &r, &c));
                }
            }

            // A full session sends each step at most once, in planning order.
            let mut k = known.clone();
            let codes = run_session(&mut k, &r, &c);
            let order: Vec<usize> = codes
                .iter()
                .map(|code| Step::ALL.iter().position(|s| s.code() == *code).unwrap())
                .collect();
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "{:?}", codes);

            // Afterwards, with nothing changed, the next session has nothing to do.
            prop_assert_eq!(run_session(&mut k, &r, &c), Vec::<i32>::new());
        }
    }
}
