//! What an actor is given to run: [`ActorSetup`], everything it needs and nothing of the
//! registry's insides.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::command::DocCommand;
use crate::config::DocConfig;
use crate::fanout::Fanout;
use crate::hooks::Hooks;
use crate::inbox::RemoteInbox;
use crate::name::DocName;
use crate::store::DocStore;

/// What an actor is given to run: everything it needs and nothing of the registry's insides.
pub(crate) struct ActorSetup {
    pub name: DocName,
    pub generation: u64,
    pub store: Arc<dyn DocStore>,
    pub config: Arc<DocConfig>,
    pub fanout: Arc<dyn Fanout>,
    pub hooks: Hooks,
    pub mailbox: mpsc::Receiver<DocCommand>,
    pub inbox: RemoteInbox,
    /// Called once, when the actor leaves the registry (before it closes its sessions, so a
    /// client that reconnects at once reaches a fresh actor).
    pub on_exit: Box<dyn FnOnce() + Send + Sync>,
}
