//! A sequence of frames from one client, through the real document actor (in-memory store).
//! The session stops at the first frame the decoder rejects, as the server does, and after the
//! first update yrs rejects (the server then reloads the document from storage). Each update
//! is handled before the next frame is sent, so that the server applies it alone, as the
//! reference does. Afterwards the
//! document must hold exactly the updates that were accepted: its state vector equals that of a
//! reference document fed only those updates.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use weft_crdt::protocol::{decode_client_message, ClientMessage};
use weft_crdt::{
    session_queue, DocConfig, DocName, MemoryStore, QueueLimits, Registry, SessionInfo,
};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Transact, Update};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // libfuzzer-sys's panic hook aborts even on panics Weft catches (yrs panics on some
        // crafted updates; the decoder and the actor catch them by design). A silent hook keeps
        // those from counting as crashes; a panic that escapes still fails the run.
        std::panic::set_hook(Box::new(|_| {}));
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|frames: Vec<Vec<u8>>| {
    let rt = runtime();
    rt.block_on(async move {
        let registry = Registry::new(
            Arc::new(MemoryStore::new()),
            DocConfig::default(),
            rt.handle().clone(),
        );
        let name = DocName::new("fuzz").unwrap();
        let (queue, mut inbox) = session_queue(QueueLimits {
            frames: 1024,
            bytes: usize::MAX,
        });
        let info = SessionInfo {
            conn: weft_crdt::ConnId::from_u128(1),
            user: "fuzz".into(),
            can_write: true,
            authenticated: false,
        };
        let mut session = registry.join(&name, info, queue).await.expect("join");
        let mut reference = Doc::new();
        let mut accepted: Vec<bytes::Bytes> = Vec::new();
        for frame in frames {
            let Ok(message) = decode_client_message(bytes::Bytes::from(frame)) else {
                break;
            };
            let mut rejected = false;
            if let ClientMessage::Update(incoming) = &message {
                let update = Update::decode_v1(&incoming.bytes).expect("decoded once already");
                let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    reference.transact_mut().apply_update(update)
                }));
                if !matches!(applied, Ok(Ok(()))) {
                    // yrs refused the update (or panicked on it, a known yrs bug, see
                    // regressions/), possibly after integrating part of it. The server must
                    // reload the document from storage: only the accepted updates remain.
                    rejected = true;
                    reference = Doc::new();
                    for bytes in &accepted {
                        let update = Update::decode_v1(bytes).expect("decoded before");
                        reference
                            .transact_mut()
                            .apply_update(update)
                            .expect("accepted before");
                    }
                } else {
                    accepted.push(incoming.bytes.clone());
                }
            }
            let is_update = matches!(message, ClientMessage::Update(_));
            assert!(session.send_async(message).await.is_ok());
            if rejected {
                break;
            }
            if is_update {
                // One update per batch, as the reference applies one per transaction: the server
                // applies a batch in one transaction, where yrs may judge the same updates
                // differently, and drops the whole batch if it rejects one.
                registry.read(&name, |_| ()).await.expect("read");
            }
        }
        drop(session);
        let server_sv = registry
            .read(&name, |d| d.transact().state_vector())
            .await
            .expect("read");
        // A clock of 0 means "nothing from this client", listed or not.
        let nonzero = |sv: yrs::StateVector| {
            let mut v: Vec<(u64, u32)> = sv
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(id, c)| (id.get(), *c))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            nonzero(server_sv),
            nonzero(reference.transact().state_vector())
        );
        while inbox.try_recv().is_some() {}
        registry.shutdown().await;
    });
});
