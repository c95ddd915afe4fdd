//! Many writers at once: every write succeeds and reads back, and the audit
//! chain the committer builds stays whole and complete.

use std::collections::HashSet;

use crate::helpers::{assert_chain, audit_count, new_entry, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_additions_all_land_and_the_chain_verifies() {
    let env = Env::new();
    let (p, a, _) = env.patient("ann@example.test").await;
    let before = audit_count(env.store());

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (core, p) = (env.core.clone(), p.clone());
            tokio::spawn(async move {
                (
                    i,
                    core.add_entry(&p, a, new_entry(&format!("Entry {i}")))
                        .await,
                )
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        let (i, r) = t.await.expect("no task panicked");
        ids.push((i, r.unwrap_or_else(|e| panic!("addition {i} failed: {e}"))));
    }
    assert_eq!(
        ids.iter().map(|(_, id)| *id).collect::<HashSet<_>>().len(),
        50
    );

    assert_eq!(
        audit_count(env.store()),
        before + 50,
        "one audit entry per addition"
    );
    assert_chain(env.store(), before + 50);
    for (i, id) in &ids {
        let e = env.core.entry(&p, a, *id).await.unwrap();
        assert_eq!(e.title, format!("Entry {i}"));
    }
    assert_eq!(env.core.record(&p, a).await.unwrap().entries.len(), 50);
    assert_chain(env.store(), before + 50 + 50 + 1);
}
