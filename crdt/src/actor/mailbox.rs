//! The actor's mailbox: taking commands in batches, and leaving. [`Mailbox`] also holds the
//! registry's exit callback: the entry goes and `unloaded` is reported exactly once, however
//! the actor ends (a panic included).

use tokio::sync::mpsc;

use crate::command::DocCommand;
use crate::error::DocError;
use crate::hooks::Hooks;
use crate::name::DocName;

/// Leaves the registry and reports `unloaded` exactly once, even when the actor panics.
struct Leaving {
    name: DocName,
    hooks: Hooks,
    on_exit: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Leaving {
    fn new(name: DocName, hooks: Hooks, on_exit: Box<dyn FnOnce() + Send + Sync>) -> Self {
        Leaving {
            name,
            hooks,
            on_exit: Some(on_exit),
        }
    }

    /// Leaves the registry (once).
    fn leave(&mut self) {
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

/// The mailbox of one actor.
pub(super) struct Mailbox {
    /// First field, so dropped first: the registry entry goes before anything else.
    leaving: Leaving,
    receiver: mpsc::Receiver<DocCommand>,
}

impl Mailbox {
    pub fn new(
        name: DocName,
        hooks: Hooks,
        receiver: mpsc::Receiver<DocCommand>,
        on_exit: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        Mailbox {
            leaving: Leaving::new(name, hooks, on_exit),
            receiver,
        }
    }

    /// The next command (`None` once every sender is gone).
    pub async fn recv(&mut self) -> Option<DocCommand> {
        self.receiver.recv().await
    }

    /// `first` and whatever else is waiting, up to `max` commands: one batch.
    pub fn batch(&mut self, first: DocCommand, max: usize) -> Vec<DocCommand> {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < max {
            match self.receiver.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        batch
    }

    /// Commands waiting.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// Leaves the registry (once), so that new requests reach a new actor.
    pub fn leave(&mut self) {
        self.leaving.leave();
    }

    /// Takes no more commands and answers those still waiting with `refusal()`.
    pub fn close(&mut self, refusal: impl Fn() -> DocError) {
        self.receiver.close();
        while let Ok(command) = self.receiver.try_recv() {
            command.refuse(refusal());
        }
    }
}
