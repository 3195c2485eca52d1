use super::*;
use serde::Deserialize;

fn member(first: usize, last: usize) -> MemberObservation {
    MemberObservation {
        first,
        last,
        blocked_for_s: (last - first) as f64,
        born: Some(first as f64),
        ..MemberObservation::default()
    }
}

fn observation(scans: usize, members: Vec<MemberObservation>) -> SiteObservation {
    let counts = (0..scans)
        .map(|i| {
            members
                .iter()
                .filter(|m| m.first <= i && i <= m.last)
                .count() as u32
        })
        .collect();
    SiteObservation {
        times_s: (0..scans).map(|i| i as f64).collect(),
        counts,
        members,
        window_started_before_process: false,
        wait_age_known: false,
        process_age_s: None,
    }
}

/// Check that waiters arriving every scan and never leaving are a leak.
#[test]
fn steady_arrivals_that_stay_are_a_leak() {
    let members = (0..10).flat_map(|i| [member(i, 9), member(i, 9)]).collect();
    let j = judge(&observation(10, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Leak, "{j:?}");
    assert_eq!(j.departures, 0);
    assert_eq!(j.stayed, 18);
    assert!(
        (j.growth_per_min - 120.0).abs() < 1e-6,
        "{}",
        j.growth_per_min
    );
}

/// Check that a fixed pool whose members all stay blocked, none arriving, is no leak.
#[test]
fn idle_fixed_pool_is_ok() {
    let members = (0..16).map(|_| member(0, 9)).collect();
    let j = judge(&observation(10, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
    assert_eq!(j.arrivals, 0);
}

/// Check that a busy pool, whose workers wake and re-park between scans, is no leak
/// even when the count happens to end higher than it started.
#[test]
fn churning_pool_is_ok() {
    let mut members: Vec<_> = (0..10)
        .flat_map(|i| (0..4).map(move |_| member(i, i)))
        .collect();
    members.extend((0..3).map(|_| member(9, 9)));
    let j = judge(&observation(10, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
    assert!(j.departures >= 36);
}

/// Check that a ramp of in-flight waiters, each leaving after a scan, is no leak.
#[test]
fn load_ramp_with_short_waits_is_ok() {
    let members = (0..10)
        .flat_map(|i| (0..=i).map(move |_| member(i, (i + 1).min(9))))
        .collect();
    let j = judge(&observation(10, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check that a window too short to judge never yields a leak.
#[test]
fn too_few_scans_is_ok() {
    let j = judge(
        &observation(2, vec![member(1, 1); 50]),
        &VerdictPolicy::default(),
    );
    assert_eq!(j.outcome(), Outcome::Ok);
}

#[derive(Deserialize)]
struct RecordedSite {
    comm: String,
    observation: SiteObservation,
}

/// Check that a recorded real run (mutex, condvar and Rust mpsc leakers beside a busy
/// 16-worker pool, 10 s) is judged right, and stays right on every shorter window of
/// at least 4 scans.
#[test]
fn recorded_native_run_is_judged_right() {
    let sites: Vec<RecordedSite> = serde_json::from_str(include_str!(
        "../../tests/data/native-leaks-and-pool-10s.json"
    ))
    .unwrap();
    assert_eq!(sites.len(), 4);
    for site in &sites {
        let expected = if site.comm.ends_with("_leak") {
            Outcome::Leak
        } else {
            Outcome::Ok
        };
        for scans in 4..=site.observation.counts.len() {
            let j = judge(&site.observation.prefix(scans), &VerdictPolicy::default());
            assert_eq!(
                j.outcome().is_leak(),
                expected.is_leak(),
                "{} over {scans} scans: {j:?}",
                site.comm
            );
        }
    }
}

/// A member present for the whole window, born at `born` (seconds, window-relative)
/// and blocked for `blocked` seconds at the end of a `scans`-scan window.
fn resident(scans: usize, born: f64, blocked: f64) -> MemberObservation {
    MemberObservation {
        first: 0,
        last: scans - 1,
        blocked_for_s: blocked,
        born: Some(born),
        ..MemberObservation::default()
    }
}

fn thread_observation(scans: usize, members: Vec<MemberObservation>) -> SiteObservation {
    SiteObservation {
        wait_age_known: true,
        ..observation(scans, members)
    }
}

/// Check that a very slow leak (one every 10 s, running for two minutes before the
/// watch) is found from its members' births although the window adds only one.
#[test]
fn very_slow_leak_is_found_from_births() {
    let end = 14.0;
    let mut members: Vec<_> = (0..12)
        .map(|i| {
            let born = -115.0 + 10.0 * i as f64;
            resident(15, born, end - born - 0.01)
        })
        .collect();
    members.push(MemberObservation {
        first: 8,
        last: 14,
        blocked_for_s: 6.0,
        born: Some(7.9),
        ..MemberObservation::default()
    });
    let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Leak, "{j:?}");
    assert!(j.rule.to_string().contains("born steadily"), "{}", j.rule);
}

/// Check that long-lived waiters constant in number, all born together, are no leak.
#[test]
fn long_lived_constant_population_is_ok() {
    let members = (0..200)
        .map(|i| resident(15, -100.0 + i as f64 * 0.001, 113.9))
        .collect();
    let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check that a pool built up steadily long ago, then idle, is no leak: its births
/// stopped long before now.
#[test]
fn pool_built_long_ago_is_ok() {
    let members = (0..60)
        .map(|i| {
            let born = -300.0 + i as f64;
            resident(15, born, 14.0 - born)
        })
        .collect();
    let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check that a warm-up that levels off inside the window is no leak and no suspect.
#[test]
fn plateau_levelling_off_in_the_window_is_ok() {
    let members = (1..6)
        .flat_map(|scan| (0..10).map(move |_| member(scan, 14)))
        .collect();
    let j = judge(&observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
    assert!(j.rule.to_string().contains("levelled off"), "{}", j.rule);
}

/// Check that one waiter every two seconds, staying, is a leak within 15 scans.
#[test]
fn slow_leak_every_two_seconds_is_a_leak() {
    let members = (0..7).map(|k| member(1 + 2 * k, 14)).collect();
    let j = judge(&observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Leak, "{j:?}");
}

/// Check that one arrival that stays is noise, and two that stay, with nothing else
/// to go on, are a suspect, not a leak.
#[test]
fn one_arrival_is_only_a_suspect() {
    let mut members: Vec<_> = (0..4).map(|_| member(0, 14)).collect();
    members.push(member(9, 14));
    let j = judge(&observation(15, members.clone()), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "one is noise: {j:?}");
    members.push(member(12, 14));
    let j = judge(&observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Suspect, "{j:?}");
}

/// Check that threads born steadily but not blocked since birth (workers that ran,
/// then went idle) are not called a leak from their births.
#[test]
fn workers_that_ran_before_idling_are_not_a_lifetime_leak() {
    let members = (0..12)
        .map(|i| {
            let born = -115.0 + 10.0 * i as f64;
            resident(15, born, 3.0)
        })
        .collect();
    let j = judge(&thread_observation(15, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check that a slow goroutine leak, whose births are unknown, is found because its
/// population fits steady accumulation over the process's life at the window's pace,
/// while a pool filled at start with one late newcomer is not.
#[test]
fn slow_accumulation_over_process_life_is_a_leak() {
    let scans = 15;
    let unknown = |first, last| MemberObservation {
        first,
        last,
        blocked_for_s: 0.0,
        born: None,
        ..MemberObservation::default()
    };
    let mut leak: Vec<_> = (0..12).map(|_| unknown(0, scans - 1)).collect();
    leak.push(unknown(8, scans - 1));
    let mut obs = observation(scans, leak);
    obs.process_age_s = Some(135.0);
    let j = judge(&obs, &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Leak, "{j:?}");
    assert!(j.rule.to_string().contains("accumulated"), "{}", j.rule);

    let mut pool: Vec<_> = (0..200).map(|_| unknown(0, scans - 1)).collect();
    pool.push(unknown(8, scans - 1));
    let mut obs = observation(scans, pool);
    obs.process_age_s = Some(135.0);
    let j = judge(&obs, &VerdictPolicy::default());
    assert_eq!(
        j.outcome(),
        Outcome::Ok,
        "200 members at start, 1 newcomer: {j:?}"
    );
}

#[derive(Deserialize)]
struct ShapeCases {
    processes: Vec<ShapeCase>,
}

#[derive(Deserialize)]
struct ShapeCase {
    case: String,
    pid: u32,
    expected: String,
    leak_functions: Vec<String>,
}

#[derive(Deserialize)]
struct ShapeSite {
    pid: u32,
    stack: Vec<Option<String>>,
    observation: SiteObservation,
}

/// Check that every site of a recorded `cargo xtask accuracy` run (each shape of a
/// leak and of a steady program, threads and goroutines, 15 s) is judged right: a site
/// is a leak exactly when its stack holds one of its case's leak functions; and that
/// a longer window never turns a right "leak" into "ok" once it was found.
#[test]
fn recorded_shapes_are_judged_right() {
    let cases: ShapeCases =
        serde_json::from_str(include_str!("../../tests/data/shapes/cases.json")).unwrap();
    let sites: Vec<ShapeSite> =
        serde_json::from_str(include_str!("../../tests/data/shapes/observations.json")).unwrap();
    let policy = VerdictPolicy::default();
    let mut wrong = Vec::new();
    let mut leaks_found = std::collections::BTreeSet::new();
    for site in &sites {
        let case = cases
            .processes
            .iter()
            .find(|c| c.pid == site.pid)
            .expect("every pid has a case");
        let at_leak_function = site
            .stack
            .iter()
            .flatten()
            .any(|f| case.leak_functions.iter().any(|l| f.contains(l.as_str())));
        let expected = if case.expected == "leak" && at_leak_function {
            Outcome::Leak
        } else {
            Outcome::Ok
        };
        let j = judge(&site.observation, &policy);
        if j.outcome().is_leak() != expected.is_leak() {
            wrong.push(format!(
                "{} ({:?}): expected {expected:?}, got {:?}: {}",
                case.case,
                site.stack.iter().flatten().nth(3),
                j.outcome(),
                j.rule
            ));
        }
        if j.outcome() == Outcome::Leak && expected == Outcome::Leak {
            leaks_found.insert(case.case.clone());
            let scans = site.observation.counts.len();
            let first_leak = (3..=scans)
                .find(|&k| judge(&site.observation.prefix(k), &policy).outcome() == Outcome::Leak)
                .unwrap();
            for k in first_leak..=scans {
                let jk = judge(&site.observation.prefix(k), &policy);
                assert_eq!(
                    jk.outcome(),
                    Outcome::Leak,
                    "{}: leak at {first_leak} scans but not at {k}: {}",
                    case.case,
                    jk.rule
                );
            }
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    let leak_cases = cases
        .processes
        .iter()
        .filter(|c| c.expected == "leak")
        .count();
    assert_eq!(
        leaks_found.len(),
        leak_cases,
        "every leak case has a leak site found: {leaks_found:?}"
    );
}

/// Goroutine members present all window, parked at `parks` (window-relative s), each
/// dated within a 2 s GC bracket by the runtime.
fn dated_parks(scans: usize, parks: &[f64]) -> Vec<MemberObservation> {
    parks
        .iter()
        .map(|&p| MemberObservation {
            first: 0,
            last: scans - 1,
            blocked_for_s: 14.0 - p,
            born: Some(p),
            parked: Some([p - 2.0, p]),
            wait_age_from_runtime: true,
            waiter: None,
        })
        .collect()
}

/// Check that goroutines parked one every 10 s over three minutes, dated by the
/// runtime, none leaving, are a leak with a runtime wait age; that the same site with
/// one member leaving (a pool re-parking) is not; and that parks whose GC brackets
/// overlap too much to prove a spread are not either.
#[test]
fn goroutine_parks_dated_by_the_runtime() {
    let parks: Vec<f64> = (0..18).map(|k| -170.0 + 10.0 * k as f64).collect();
    let j = judge(
        &observation(15, dated_parks(15, &parks)),
        &VerdictPolicy::default(),
    );
    assert_eq!(j.outcome(), Outcome::Leak, "{j:?}");
    assert_eq!(j.oldest_wait_source, Some(WaitAgeSource::Runtime));
    assert!(
        (j.oldest_wait_s - 184.0).abs() < 1e-9,
        "{}",
        j.oldest_wait_s
    );

    let mut leaving = dated_parks(15, &parks);
    leaving.push(MemberObservation {
        last: 6,
        ..leaving[0].clone()
    });
    let j = judge(&observation(15, leaving), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "one left: {j:?}");

    let mut wide = dated_parks(15, &parks);
    for m in &mut wide {
        m.parked = Some([-200.0, 0.0]);
    }
    let j = judge(&observation(15, wide), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "nothing proven: {j:?}");
}

/// Check the slope on a known line.
#[test]
fn slope_of_a_line() {
    assert!((slope(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-12);
    assert_eq!(slope(&[1.0], &[1.0]), 0.0);
}

/// Check that every rule has its own stable name (the metrics' `rule` label, the JSON
/// `rule`), one outcome, and a reason that carries its evidence; and that outcomes
/// order by severity (a process's outcome is its most severe site's).
#[test]
fn rules_name_themselves_their_outcome_and_evidence() {
    let counts = CountSpan { first: 3, last: 9 };
    let births = |clock| SteadyBirths {
        clock,
        members: 12,
        span_s: 110.0,
        every_s: 10.0,
        newest_age_s: 4.0,
        stayed: 1,
    };
    let stayers = Stayers {
        settled: 37,
        churned: 560,
        long_departures: 0,
        growth_per_min: 148.2,
        settle_s: 3.75,
    };
    let all = [
        (Rule::TooFewScans { scans: 2 }, Outcome::Ok, "only 2 scans"),
        (
            Rule::NeverLeft(stayers),
            Outcome::Leak,
            "37 arrived and never left while 560 came and went; the ones that stay grew +148/min",
        ),
        (
            Rule::StayersMayGrow(Stayers {
                long_departures: 12,
                ..stayers
            }),
            Outcome::Suspect,
            "but 12 idle ones left too: a crowd that rotates, or a leak",
        ),
        (
            Rule::ComeAndGo {
                arrivals: 40,
                departures: 38,
                window_s: 15.0,
            },
            Outcome::Ok,
            "40 arrived, 38 left",
        ),
        (
            Rule::StayedAndGrowing {
                stayed: 6,
                departures: 0,
                counts,
                growth_per_min: 24.0,
            },
            Outcome::Leak,
            "from 3 to 9 (+24.0/min)",
        ),
        (
            Rule::SteadyBirths(births(BirthClock::ThreadStart)),
            Outcome::Leak,
            "each blocked since birth",
        ),
        (
            Rule::SteadyBirths(births(BirthClock::GcCycles)),
            Outcome::Leak,
            "dated by the runtime's GC cycles",
        ),
        (
            Rule::Accumulated {
                members: 13,
                process_age_s: 135.0,
                every_s: 10.4,
                stayed: 1,
            },
            Outcome::Leak,
            "13 waiters accumulated",
        ),
        (Rule::LevelledOff { counts }, Outcome::Ok, "levelled off"),
        (
            Rule::FewStayed {
                stayed: 2,
                window_s: 15.0,
            },
            Outcome::Suspect,
            "suspect: 2 waiter(s)",
        ),
        (Rule::TooFewStayed { stayed: 1 }, Outcome::Ok, "only 1 new"),
        (
            Rule::NoGrowth { counts },
            Outcome::Ok,
            "3 waiters at the start",
        ),
    ];
    let mut names = std::collections::BTreeSet::new();
    for (rule, outcome, words) in &all {
        assert_eq!(rule.outcome(), *outcome, "{rule:?}");
        assert!(rule.to_string().contains(words), "{rule}");
        let name = rule.name();
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        names.insert(name);
    }
    // born_steadily and parked_steadily are one rule told by its clock.
    assert_eq!(names.len(), all.len());
    assert!(Outcome::Ok < Outcome::Suspect && Outcome::Suspect < Outcome::Leak);
    assert_eq!(Outcome::Suspect.json_verdict(), "ok");
    assert_eq!(Outcome::Leak.json_verdict(), "leak");
}

/// A one-second-scan site where `busy` waiters re-park every scan (each wait seen at
/// one scan only, as keep-alive readers parking hundreds of times a second are),
/// beside `members`.
fn busy_site(scans: usize, busy: usize, mut members: Vec<MemberObservation>) -> SiteObservation {
    for scan in 0..scans {
        members.extend((0..busy).map(|_| MemberObservation {
            first: scan,
            last: scan,
            blocked_for_s: 0.01,
            ..MemberObservation::default()
        }));
    }
    observation(scans, members)
}

/// `n` waits that arrive at `first` and are still waiting at the window's last scan.
fn staying(n: usize, first: usize, scans: usize) -> Vec<MemberObservation> {
    (0..n).map(|_| member(first, scans - 1)).collect()
}

/// Check the story: forty busy keep-alive readers re-park every scan while
/// clients that send one request and vanish leave a waiter behind, 2.5 a second, at the
/// same site: a leak, said in one glance, found from 8 scans on and kept.
#[test]
fn leak_among_busy_waiters_is_found_from_those_that_never_leave() {
    let scans = 16;
    let mut members = staying(12, 0, scans);
    for scan in 1..scans {
        members.extend(staying(2 + scan % 2, scan, scans));
    }
    let obs = busy_site(scans, 40, members);
    let j = judge(&obs, &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Leak, "{j:?}");
    let Rule::NeverLeft(s) = &j.rule else {
        panic!("{j:?}")
    };
    assert_eq!(s.long_departures, 0);
    assert!((s.growth_per_min - 150.0).abs() < 15.0, "{s:?}");
    let reason = j.rule.to_string();
    assert!(
        reason.starts_with(&format!(
            "{} arrived and never left while 560 came and went; the ones that stay grew +1",
            s.settled
        )),
        "{reason}"
    );
    let first = (3..=scans)
        .find(|&k| judge(&obs.prefix(k), &VerdictPolicy::default()).is_leak())
        .unwrap();
    assert!(first <= 8, "found only after {first} scans");
    for k in first..=scans {
        let jk = judge(&obs.prefix(k), &VerdictPolicy::default());
        assert!(
            jk.is_leak(),
            "leak at {first} scans, not at {k}: {}",
            jk.rule
        );
    }
}

/// Check the same site as threads (wait ages known exactly): a leaked worker parks
/// where live workers park, the live ones waking between every scan.
#[test]
fn leaked_workers_parked_among_live_ones_are_a_leak() {
    let scans = 16;
    let mut members = Vec::new();
    for scan in 1..scans {
        members.extend(staying(2, scan, scans));
    }
    for m in &mut members {
        m.blocked_for_s = (scans - 1 - m.first) as f64 + 0.4;
    }
    let obs = SiteObservation {
        wait_age_known: true,
        ..busy_site(scans, 16, members)
    };
    let j = judge(&obs, &VerdictPolicy::default());
    assert!(matches!(j.rule, Rule::NeverLeft(_)), "{j:?}");
}

/// Check that a bounded crowd of idle keep-alive connections that rotates (one hangs
/// up, one arrives, two a second) beside busy readers is no leak and no suspect: its
/// old waiters leave as fast as new ones settle.
#[test]
fn rotating_idle_crowd_among_busy_waiters_is_ok() {
    let scans = 16;
    let mut members = Vec::new();
    let mut residents = 100;
    for scan in 1..scans {
        members.extend(staying(2, scan, scans));
        members.extend((0..2).map(|_| member(0, scan - 1)));
        residents -= 2;
    }
    members.extend(staying(residents, 0, scans));
    let j = judge(&busy_site(scans, 40, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check that a crowd that rotates while it grows (three arrive, one hangs up, each
/// second) is a suspect, not a leak: some old waiters leave, fewer than settle.
#[test]
fn growing_crowd_that_rotates_is_a_suspect() {
    let scans = 16;
    let mut members = Vec::new();
    for scan in 1..scans {
        members.extend(staying(3, scan, scans));
        members.push(member(0, scan - 1));
    }
    members.extend(staying(60, 0, scans));
    let j = judge(&busy_site(scans, 40, members), &VerdictPolicy::default());
    assert!(matches!(j.rule, Rule::StayersMayGrow(_)), "{j:?}");
    assert!(
        j.rule.to_string().contains("a crowd that rotates"),
        "{}",
        j.rule
    );
}

/// Check that a pool whose workers idle for long stretches between rare jobs, at a busy
/// site, is no leak: each job ends a long wait and starts a new one.
#[test]
fn pool_idle_between_rare_jobs_among_busy_waiters_is_ok() {
    let scans = 16;
    let mut members = Vec::new();
    let mut idle = 32;
    for scan in (1..scans).step_by(2) {
        members.push(member(0, scan - 1));
        members.extend(staying(1, scan, scans));
        idle -= 1;
    }
    members.extend(staying(idle, 0, scans));
    let j = judge(&busy_site(scans, 40, members), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check that a warm-up (connections arriving and staying for the first third of the
/// window, then no more), a burst that stays, and a load ramp of short waits, each
/// beside busy waiters, are no leak and no suspect.
#[test]
fn warm_up_burst_and_ramp_among_busy_waiters_are_ok() {
    let scans = 16;
    let warm_up = (1..6).flat_map(|scan| staying(10, scan, scans)).collect();
    let burst = staying(30, 3, scans);
    let ramp = (1..scans)
        .flat_map(|scan| (0..scan).map(move |_| member(scan, (scan + 1).min(scans - 1))))
        .collect();
    for (shape, members) in [("warm-up", warm_up), ("burst", burst), ("ramp", ramp)] {
        let j = judge(&busy_site(scans, 40, members), &VerdictPolicy::default());
        assert_eq!(j.outcome(), Outcome::Ok, "{shape}: {j:?}");
    }
}

/// The waits of one waiter at the site: parked from each of `spans` (first, last scan),
/// all one goroutine `id`.
fn waiter(id: u64, spans: &[(usize, usize)]) -> Vec<MemberObservation> {
    spans
        .iter()
        .map(|&(first, last)| MemberObservation {
            waiter: Some(id),
            ..member(first, last)
        })
        .collect()
}

/// Check the story as a Go server has it: the vanished clients' connections
/// are woken every 15 s by TCP keep-alive probes and park again at the same read, so
/// their waits end, but their goroutines never leave the site: still a leak; while the
/// same wake-ups in a crowd that rotates (old connections hang up) stay ok.
#[test]
fn waiters_that_wait_again_at_once_never_left() {
    let scans = 31;
    let mut leak = Vec::new();
    let mut rotating = Vec::new();
    let mut id = 0;
    for scan in 1..scans {
        for _ in 0..3 {
            id += 1;
            // Woken 13 scans after it came, and parked again at once.
            let spans: &[(usize, usize)] = if scan + 13 < scans - 1 {
                &[(scan, scan + 13), (scan + 14, scans - 1)]
            } else {
                &[(scan, scans - 1)]
            };
            leak.extend(waiter(id, spans));
            rotating.extend(waiter(id, spans));
            // In the rotating crowd an old connection hangs up for each new one.
            id += 1;
            let gone = scan - 1;
            let spans: &[(usize, usize)] = if gone > 13 {
                &[(0, 12), (13, gone)]
            } else {
                &[(0, gone)]
            };
            rotating.extend(waiter(id, spans));
        }
    }
    let j = judge(&busy_site(scans, 40, leak), &VerdictPolicy::default());
    assert!(matches!(j.rule, Rule::NeverLeft(_)), "{j:?}");
    let j = judge(&busy_site(scans, 40, rotating), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}

/// Check the keep-alive story over the daemon's window (300 s, a scan every 2 s): the
/// leaked connections' goroutines are woken every 15 s and park again at once, so no
/// wait of theirs lasts a quarter of the window, yet they never leave and are a leak;
/// the same window with a crowd that rotates (lives of 20-80 s) is ok.
#[test]
fn keep_alive_wake_ups_over_the_daemon_window() {
    let scans = 151;
    let every = 8; // scans between keep-alive wake-ups: 16 s
    let mut leak = Vec::new();
    let mut rotating = Vec::new();
    for (id, first) in (1..scans).step_by(2).enumerate() {
        let id = id as u64 * 2;
        let parks = |until: usize| {
            let mut spans = Vec::new();
            let mut at = first;
            while at + every < until {
                spans.push((at, at + every - 1));
                at += every;
            }
            spans.push((at, until));
            spans
        };
        leak.extend(waiter(id, &parks(scans - 1)));
        // One arrives and one hangs up every 4 s; each lives 20 to 80 scans.
        let gone = (first + 20 + (id as usize * 7) % 60).min(scans - 1);
        rotating.extend(waiter(id, &parks(gone)));
        if gone < scans - 1 {
            rotating.push(MemberObservation {
                waiter: Some(id + 1),
                ..member(0, first)
            });
        }
    }
    let daemon_window = |members| {
        let mut obs = busy_site(scans, 40, members);
        obs.times_s.iter_mut().for_each(|t| *t *= 2.0);
        obs
    };
    let j = judge(&daemon_window(leak), &VerdictPolicy::default());
    assert!(matches!(j.rule, Rule::NeverLeft(_)), "{j:?}");
    let j = judge(&daemon_window(rotating), &VerdictPolicy::default());
    assert_eq!(j.outcome(), Outcome::Ok, "{j:?}");
}
