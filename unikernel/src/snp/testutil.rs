//! Test doubles: a hypervisor that answers the MSR protocol and GHCB exits from closures.

use std::vec::Vec;

use super::ghcb::{GhcbPage, Hypervisor};

/// GPA the model pretends the GHCB page lives at.
pub const MODEL_GHCB_GPA: u64 = 0x7000;

type MsrFn = dyn FnMut(u64) -> u64;
type ExitFn = dyn FnMut(&mut GhcbPage);

/// A hypervisor model: MSR requests and GHCB exits are logged and answered by closures.
pub struct ModelHv {
    pub page: GhcbPage,
    pub msr_log: Vec<u64>,
    /// Copies of the page as the guest handed it over, one per exit.
    pub exits: Vec<GhcbPage>,
    pub on_msr: Box<MsrFn>,
    pub on_exit: Box<ExitFn>,
}

impl ModelHv {
    pub fn new(
        on_msr: impl FnMut(u64) -> u64 + 'static,
        on_exit: impl FnMut(&mut GhcbPage) + 'static,
    ) -> Self {
        Self {
            page: GhcbPage::new(),
            msr_log: Vec::new(),
            exits: Vec::new(),
            on_msr: Box::new(on_msr),
            on_exit: Box::new(on_exit),
        }
    }
}

impl Hypervisor for ModelHv {
    fn msr_protocol(&mut self, request: u64) -> u64 {
        self.msr_log.push(request);
        (self.on_msr)(request)
    }

    fn ghcb(&mut self) -> Option<&mut GhcbPage> {
        Some(&mut self.page)
    }

    fn ghcb_gpa(&self) -> u64 {
        MODEL_GHCB_GPA
    }

    fn ghcb_exit(&mut self) {
        self.exits.push(self.page.clone());
        (self.on_exit)(&mut self.page);
    }
}
