//! What the machine looked like at one moment, read from `/proc`: the
//! server's RSS and CPU, this process's and the watched ones' CPU, the
//! whole machine's busy time, the load average, and how many datagrams
//! the kernel dropped on each side's full UDP receive buffers. A row's
//! figures are the difference between its end and the previous one.

/// What the machine looked like at one moment (`/proc`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
    pub(crate) server_ticks: u64,
    pub(crate) self_ticks: u64,
    pub(crate) watch_ticks: u64,
    pub(crate) busy_ticks: u64,
    pub(crate) load1: f64,
    /// Datagrams the kernel dropped because a receive buffer was full
    /// (`/proc/net/udp`): the server's sockets (its listening ones and those
    /// it forwards from), this generator's, the proxy's.
    pub(crate) drops: Drops,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct Drops {
    pub(crate) server: u64,
    pub(crate) generator: u64,
    pub(crate) proxy: u64,
}

/// The local ports whose drops count as whose.
#[derive(Default)]
pub(crate) struct Ports {
    pub(crate) server: u16,
    /// The proxy's listening port: the server's upstream sockets are
    /// connected to it.
    pub(crate) proxy_listen: u16,
    pub(crate) proxy: Vec<u16>,
    pub(crate) generator: Vec<u16>,
}

/// The processes to sample besides the machine and this one.
pub(crate) struct Watched<'a> {
    pub(crate) server: Option<u32>,
    pub(crate) others: &'a [u32],
}

/// Sums the `drops` column of `/proc/net/udp` by owner.
fn udp_drops(ports: &Ports) -> Drops {
    std::fs::read_to_string("/proc/net/udp")
        .map_or_else(|_| Drops::default(), |t| drops_in(&t, ports))
}

fn drops_in(text: &str, ports: &Ports) -> Drops {
    let mut d = Drops::default();
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let (local, remote) = (port(f[1]), port(f[2]));
        let drops: u64 = f[f.len() - 1].parse().unwrap_or(0);
        if local == ports.server || (ports.proxy_listen != 0 && remote == ports.proxy_listen) {
            d.server += drops;
        } else if ports.generator.contains(&local) {
            d.generator += drops;
        } else if ports.proxy.contains(&local) {
            d.proxy += drops;
        }
    }
    d
}

/// A process's user and system CPU time, in clock ticks.
fn proc_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0, |s| ticks_in(&s))
}

fn ticks_in(stat: &str) -> u64 {
    // Fields after the ")" that ends the command name: utime and stime are
    // the 14th and 15th of the line, the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

pub(crate) fn sample(watched: &Watched<'_>, ports: &Ports) -> Sample {
    let mut s = Sample {
        drops: udp_drops(ports),
        ..Sample::default()
    };
    if let Some(pid) = watched.server {
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let kb = |key: &str| {
                st.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            s.rss_kb = kb("VmRSS:");
            s.hwm_kb = kb("VmHWM:");
        }
        s.server_ticks = proc_ticks(&pid.to_string());
    }
    s.self_ticks = proc_ticks("self");
    s.watch_ticks = watched
        .others
        .iter()
        .map(|p| proc_ticks(&p.to_string()))
        .sum();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(cpu) = stat.lines().next()
    {
        let v: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle, iowait.
        s.busy_ticks = v
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
            .map(|(_, x)| x)
            .sum();
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        s.load1 = l
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0);
    }
    s
}

/// Clock ticks a second (`_SC_CLK_TCK`), the unit of `/proc`'s CPU times.
#[allow(unsafe_code)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// `ticks` of CPU over `secs`, in % of one core.
pub(crate) fn cpu_pct(ticks: u64, secs: f64) -> f64 {
    100.0 * ticks as f64 / clock_ticks() / secs.max(1e-9)
}

/// CPU use over a stretch, in % of one core.
pub(crate) struct Cpu {
    pub(crate) server: f64,
    pub(crate) generator: f64,
    pub(crate) watched: f64,
    /// The rest of the machine: what else competed for the cores.
    pub(crate) other: f64,
}

pub(crate) fn cpu_between(a: &Sample, b: &Sample, secs: f64) -> Cpu {
    let d = |f: fn(&Sample) -> u64| f(b).saturating_sub(f(a));
    let server = cpu_pct(d(|s| s.server_ticks), secs);
    let generator = cpu_pct(d(|s| s.self_ticks), secs);
    let watched = cpu_pct(d(|s| s.watch_ticks), secs);
    let busy = cpu_pct(d(|s| s.busy_ticks), secs);
    Cpu {
        server,
        generator,
        watched,
        other: (busy - server - generator - watched).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_charged_by_port() {
        // /proc/net/udp: local 15375 (the server), a server socket
        // connected to the proxy (15376), the generator's 40000, the
        // proxy's 41000, and a stranger.
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:3C0F 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 1 2 0000000000000000 5
  2: 0100007F:8000 0100007F:3C10 01 00000000:00000000 00:00000000 00000000  1000        0 2 2 0000000000000000 7
  3: 0100007F:9C40 0100007F:3C0F 01 00000000:00000000 00:00000000 00000000  1000        0 3 2 0000000000000000 11
  4: 0100007F:A028 0100007F:3C0E 01 00000000:00000000 00:00000000 00000000  1000        0 4 2 0000000000000000 13
  5: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 17
";
        let ports = Ports {
            server: 15375,
            proxy_listen: 15376,
            proxy: vec![41000],
            generator: vec![40000],
        };
        let d = drops_in(text, &ports);
        assert_eq!((d.server, d.generator, d.proxy), (12, 11, 13));
    }

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat =
            "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 700 300 0 0 20 0 1 0 5 0 0";
        assert_eq!(ticks_in(stat), 1000);
        assert_eq!(ticks_in("garbage"), 0);
    }

    #[test]
    fn this_process_is_sampled() {
        let s = sample(
            &Watched {
                server: Some(std::process::id()),
                others: &[],
            },
            &Ports::default(),
        );
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
        assert!(s.busy_ticks > 0);
    }
}
