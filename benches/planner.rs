//! Micro-benchmarks of the sync planner and the effective-policy computation it consumes.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use mobile_admin::sync::policy::PolicyRow;
use mobile_admin::sync::policy::{digest, effective_policy};
use mobile_admin::sync::{next_step, Current, Known, Progress, Reported};

fn planner(c: &mut Criterion) {
    let h = [
        vec![1u8; 16],
        vec![2; 16],
        vec![3; 16],
        vec![4; 16],
        vec![5; 16],
    ];
    let reported = Reported {
        hash_info: &h[0],
        hash_state: &h[1],
        hash_stgs: &h[2],
        hash_pol: &h[3],
        hash_sbsc: &h[4],
    };
    let current = Current {
        policy_digest: b"0123456789abcdef",
        subs_digest: b"fedcba9876543210",
    };
    let in_sync = Known {
        info_hash: Some(h[0].clone()),
        state_hash: Some(h[1].clone()),
        settings_hash: Some(h[2].clone()),
        settings_known: true,
        settings_pending: false,
        policy_hash: Some(h[3].clone()),
        policy_digest: Some(current.policy_digest.to_vec()),
        subs_hash: Some(h[4].clone()),
        subs_digest: Some(current.subs_digest.to_vec()),
    };
    c.bench_function("next_step/unchanged", |b| {
        b.iter(|| {
            next_step(
                black_box(&in_sync),
                &reported,
                &current,
                &Progress::default(),
            )
        })
    });
    c.bench_function("next_step/first_contact_session", |b| {
        b.iter(|| {
            let known = Known::default();
            let mut progress = Progress::default();
            let mut n = 0;
            while let Some(step) = next_step(black_box(&known), &reported, &current, &progress) {
                progress.mark(step);
                n += 1;
            }
            n
        })
    });

    // Three levels of groups with 100 locked rows each, half of them overlapping.
    let mut rows = Vec::new();
    for group in 1..=3 {
        for i in 0..100 {
            rows.push(PolicyRow {
                group_id: group,
                path: format!("Section{}/Field{}", i % 10, i + group as usize * 50),
                value_type: "int".into(),
                value: i.to_string(),
                locked: true,
            });
        }
    }
    c.bench_function("effective_policy/3_groups_300_rows", |b| {
        b.iter(|| effective_policy(black_box(&[1, 2, 3]), black_box(&rows)))
    });
    let (tree, _) = effective_policy(&[1, 2, 3], &rows);
    c.bench_function("digest/policy_250_fields", |b| {
        b.iter(|| digest(black_box(&tree)))
    });
}

criterion_group!(benches, planner);
criterion_main!(benches);
