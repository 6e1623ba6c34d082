//! Boot flow after the assembly stub: CPU tables, heap, interrupt controllers, clock, entropy,
//! virtio-net, then the network loop serving the TPM engine. Each stage logs one line; the
//! `ready` line carries the TSC stamps for reset -> ready.
#![forbid(unsafe_code)]

use alloc::vec;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use crate::arch::{self, apic, cmos, cpu, pit, serial, trap};
use crate::clock::{TscClock, timer_ticks};
use crate::engine::{Engine, KernelPlatform, RamStateStore};
use crate::server::TpmServer;
use crate::virtio::NetDevice;
use crate::{TPM_CONTROL_PORT, TPM_PORT, log, mm};

/// Longest sleep between polls when nothing is scheduled, in microseconds.
const MAX_SLEEP_US: u64 = 1_000_000;
/// Sleep used when the NIC has no MSI-X (timer polling), in microseconds.
const POLL_SLEEP_US: u64 = 1_000;

fn fatal(what: &str) -> ! {
    log!("ukvtpm: FATAL: {what}; halting");
    cpu::halt_forever()
}

/// Reason codes for [`crate::snp::hw::terminate`] (reason set 1): which step failed before the
/// serial port could say so.
mod snp_terminate {
    /// The first 2 MiB could not be split (the GHCB page cannot be shared alone).
    pub const LOW_MEMORY: u8 = 1;
    /// `snp::hw::init_ghcb` failed.
    pub const GHCB: u8 = 2;
}

/// SNP step 2 (heap up): the guest-request channel (kept in `snp::hw::GUEST`) and the shared
/// DMA pool for virtio. Any failure halts: a confidential backend must not run half set up.
fn snp_services(accepted: u64) {
    use crate::snp::hw;
    let mut mem = mm::snp::PageTables::new();
    let guest = match hw::init(hw::SnpLayout::from_linker(), &mut mem) {
        Ok(g) => g,
        Err(e) => {
            log!("ukvtpm: FATAL: SEV-SNP: guest channel: {e:?}; halting");
            cpu::halt_forever()
        }
    };
    hw::GUEST.call_once(|| spin::Mutex::new(guest));
    let pool = match crate::virtio::init_shared_pool() {
        Ok(r) => r,
        Err(e) => {
            log!("ukvtpm: FATAL: SEV-SNP: shared DMA pool: {e:?}; halting");
            cpu::halt_forever()
        }
    };
    log!(
        "ukvtpm: SEV-SNP: ghcb={:#x} registered, heap {}KiB accepted, VMPCK0 guest channel ready, dma pool {:#x}..{:#x} shared",
        hw::ghcb_gpa(),
        accepted >> 10,
        pool.start,
        pool.end
    );
}

/// Entry from `rust_start`; never returns.
pub fn main(tsc_at_reset: u64) -> ! {
    let tsc_at_rust = cpu::rdtsc();
    let (_, ist) = mm::stack_tops();
    // Traps come first: under SEV-SNP every CPUID, port I/O and most MSR accesses below raise
    // #VC (vector 29), which `trap` routes to `snp::hw::handle_vc_trap`.
    trap::init(ist);
    // SEV-SNP (snp/): plain KVM/TCG reports "not active" and takes no SNP path below.
    let snp = crate::snp::detect();
    // 4 KiB pages for the first 2 MiB (guard pages; under SNP also the GHCB page). No heap.
    let low_memory = mm::paging::protect_low_memory();
    if snp.is_snp() {
        // Before the first port I/O (serial, CMOS) or MTRR access: those need the GHCB page.
        if low_memory.is_err() {
            crate::snp::hw::terminate(snp_terminate::LOW_MEMORY);
        }
        let layout = crate::snp::hw::SnpLayout::from_linker();
        if crate::snp::hw::init_ghcb(layout, &mut mm::snp::PageTables::new()).is_err() {
            crate::snp::hw::terminate(snp_terminate::GHCB);
        }
    }
    let write_back = cpu::enable_write_back();
    serial::LOG.lock().init();
    log!("ukvtpm: {snp}");

    let ram_top = cmos::ram_top();
    let heap_range = match mm::heap_range(ram_top) {
        Ok(range) => range,
        Err(e) => {
            log!(
                "ukvtpm: FATAL: heap {} bytes < {} (give QEMU more -m)",
                e.available,
                mm::HEAP_MIN
            );
            cpu::halt_forever()
        }
    };
    if snp.is_snp() {
        // Only SNP_SEC_MEM and the secrets/CPUID pages were validated at launch.
        let mut mem = mm::snp::PageTables::new();
        if let Err(e) = crate::snp::hw::accept_memory(&mut mem, heap_range.clone()) {
            log!("ukvtpm: FATAL: SEV-SNP: accepting the heap failed: {e:?}; halting");
            cpu::halt_forever()
        }
    }
    let heap = match mm::init_heap(heap_range.clone()) {
        Ok(size) => size,
        Err(e) => {
            log!("ukvtpm: FATAL: heap of {} bytes refused", e.available);
            cpu::halt_forever()
        }
    };

    if let Err(e) = low_memory {
        log!("ukvtpm: warning: no guard pages ({e:?})");
    }
    if snp.is_snp() {
        snp_services(heap_range.end - heap_range.start);
    }

    let apic_id = apic::init();
    let cal = pit::calibrate();
    let tsc_calibrated = cpu::rdtsc();
    let clock = TscClock::new(cal.tsc_hz, tsc_at_reset);
    log!(
        "ukvtpm: boot ram_top={ram_top:#x} heap={}KiB mtrr_wb={write_back} tsc_hz={} apic_timer_hz={} tsc_reset={tsc_at_reset} tsc_rust={tsc_at_rust}",
        heap >> 10,
        cal.tsc_hz,
        cal.apic_timer_hz
    );

    let mut rng = match cpu::HwRng::new() {
        Ok(rng) => rng,
        Err(why) => fatal(why),
    };

    let mut device = match NetDevice::init(trap::VECTOR_NET, apic_id) {
        Ok(d) => d,
        Err(e) => {
            log!("ukvtpm: FATAL: virtio-net: {e:?}; halting");
            cpu::halt_forever()
        }
    };
    let tsc_net = cpu::rdtsc();
    let mac = device.mac();
    log!(
        "ukvtpm: virtio-net mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} msix={} entropy={}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        device.msix,
        rng.name()
    );

    let now = || Instant::from_micros(clock.micros(cpu::rdtsc()) as i64);
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = rng
        .next_u64()
        .unwrap_or_else(|| fatal("no entropy for the TCP seed"));
    let mut iface = Interface::new(config, &mut device, now());
    let mut sockets = SocketSet::new(vec![]);
    let dhcp = sockets.add(dhcpv4::Socket::new());
    let mut server = TpmServer::new(&mut sockets, TPM_PORT, TPM_CONTROL_PORT, now());
    // Send the DHCP DISCOVER now so the offer arrives while the engine initialises.
    iface.poll(now(), &mut device, &mut sockets);

    let platform = KernelPlatform {
        entropy: move |dest: &mut [u8]| rng.fill(dest),
        now_ms: move || clock.micros(cpu::rdtsc()) / 1000,
        store: RamStateStore::default(),
    };
    let mut engine = match Engine::new(platform) {
        Ok(e) => e,
        Err(_) => fatal("TPM engine: initial state commit failed"),
    };

    let tsc_engine = cpu::rdtsc();
    log!(
        "ukvtpm: stages_us rust={} calibrated={} net={} engine={}",
        clock.micros(tsc_at_rust),
        clock.micros(tsc_calibrated),
        clock.micros(tsc_net),
        clock.micros(tsc_engine)
    );
    let mut ready = false;
    loop {
        let t = now();
        iface.poll(t, &mut device, &mut sockets);
        match sockets.get_mut::<dhcpv4::Socket>(dhcp).poll() {
            Some(dhcpv4::Event::Configured(lease)) => {
                let cidr = lease.address;
                iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(cidr));
                });
                if let Some(router) = lease.router {
                    let _ = iface.routes_mut().add_default_ipv4_route(router);
                } else {
                    iface.routes_mut().remove_default_ipv4_route();
                }
                if !ready {
                    ready = true;
                    let tsc = cpu::rdtsc();
                    log!(
                        "ukvtpm: ready ip={cidr} port={TPM_PORT} tsc_reset={tsc_at_reset} tsc_ready={tsc} tsc_hz={} reset_to_ready_us={}",
                        clock.hz(),
                        clock.micros(tsc)
                    );
                } else {
                    log!("ukvtpm: dhcp renewed ip={cidr}");
                }
            }
            Some(dhcpv4::Event::Deconfigured) if ready => {
                log!("ukvtpm: dhcp lease lost");
                iface.update_ip_addrs(|addrs| addrs.clear());
                iface.routes_mut().remove_default_ipv4_route();
            }
            _ => {}
        }
        let busy = server.poll(&mut sockets, t, &mut |locality, command| {
            engine.execute(locality, command)
        });
        if busy {
            continue;
        }

        // Idle: sleep until the next smoltcp timer, a stalled-connection deadline or a NIC
        // interrupt, whichever comes first.
        let t = now();
        let mut sleep_us = iface
            .poll_delay(t, &sockets)
            .map_or(MAX_SLEEP_US, |d| d.total_micros())
            .min(MAX_SLEEP_US);
        if let Some(deadline) = server.next_deadline() {
            sleep_us = sleep_us.min((deadline - t).total_micros());
        }
        if !device.msix {
            sleep_us = sleep_us.min(POLL_SLEEP_US);
        }
        if sleep_us == 0 {
            continue;
        }
        apic::arm_oneshot(timer_ticks(cal.apic_timer_hz, sleep_us));
        arch::wait_for_interrupt(|| device.rx_pending());
        apic::disarm();
    }
}
