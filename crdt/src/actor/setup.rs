//! What an actor is given to run ([`ActorSetup`]), and how it leaves ([`Leaving`]): the
//! registry entry goes and `unloaded` is reported exactly once, however the actor ends.

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
    pub on_exit: Box<dyn FnOnce() + Send>,
}

/// Leaves the registry and reports `unloaded` exactly once, even when the actor panics.
pub(super) struct Leaving {
    name: DocName,
    hooks: Hooks,
    on_exit: Option<Box<dyn FnOnce() + Send>>,
}

impl Leaving {
    pub fn new(name: DocName, hooks: Hooks, on_exit: Box<dyn FnOnce() + Send>) -> Self {
        Leaving {
            name,
            hooks,
            on_exit: Some(on_exit),
        }
    }

    /// Leaves the registry (once).
    pub fn leave(&mut self) {
        if let Some(on_exit) = self.on_exit.take() {
            on_exit();
        }
    }
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.leave();
        self.hooks.emit(&self.name, |h| h.unloaded(&self.name));
    }
}
