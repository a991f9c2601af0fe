//! Case 4: requests lost while a change goes live, under load from 32 keep-alive connections:
//! hotswap (save → build → swap) against relink-and-restart (build, then restart) of the app as
//! one binary on hotswap's SDK and as an ordinary axum binary (cargo's default dev profile).
//!
//! Load runs for a second before the change, through it, and for a second after the first
//! response with the new body.

use std::collections::BTreeMap;
use std::time::Duration;

use super::save_to_served::{AppServers, HANDLER_LIBRARY, SDK_BINARY, millis_between};
use super::{BenchContext, progress, rotated};
use crate::load_generator::{LoadReport, REFUSED_RETRY_DELAY, start_load};
use crate::report::{Goal, Section, Table, milliseconds};
use crate::restart_supervisor::RestartStyle;
use crate::statistics::median;
use crate::user_style::BuildProfile;

pub(crate) const CONNECTIONS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Hotswap,
    RestartKill,
    RestartHandoff,
    StopBuildStart,
    UserStyleRestartKill,
    UserStyleStopBuildStart,
}

/// The profile of the user-style binary in this case: what a user gets without tuning.
const USER_PROFILE: BuildProfile = BuildProfile::CargoDefault;

impl Change {
    fn label(self) -> &'static str {
        match self {
            Change::Hotswap => "hotswap (didSave → swap)",
            Change::RestartKill | Change::UserStyleRestartKill => {
                RestartStyle::KillAndRebind.label()
            }
            Change::RestartHandoff => RestartStyle::SocketHandoffGraceful.label(),
            Change::StopBuildStart | Change::UserStyleStopBuildStart => {
                super::save_to_served::STOP_BUILD_START_LABEL
            }
        }
    }

    /// What the change rebuilds.
    fn built(self) -> &'static str {
        match self {
            Change::Hotswap => HANDLER_LIBRARY,
            Change::RestartKill | Change::RestartHandoff | Change::StopBuildStart => SDK_BINARY,
            Change::UserStyleRestartKill | Change::UserStyleStopBuildStart => {
                USER_PROFILE.user_style_label()
            }
        }
    }
}

const CHANGES: [Change; 6] = [
    Change::Hotswap,
    Change::RestartKill,
    Change::RestartHandoff,
    Change::StopBuildStart,
    Change::UserStyleRestartKill,
    Change::UserStyleStopBuildStart,
];

pub(crate) async fn run(
    context: &mut BenchContext,
    servers: &mut BTreeMap<String, AppServers>,
) -> anyhow::Result<()> {
    let apps = context.workspace.apps_of_every_case();
    let mut reports: BTreeMap<(String, Change), Vec<(LoadReport, f64)>> = BTreeMap::new();
    for round in 0..context.effort.load_rounds {
        for app in &apps {
            let app_servers = servers.get_mut(&app.name).expect("servers of every app");
            for change in rotated(&CHANGES, round) {
                let address = match change {
                    Change::Hotswap => app_servers.daemon.address,
                    Change::RestartKill | Change::StopBuildStart => {
                        app_servers.restart_kill.address
                    }
                    Change::RestartHandoff => app_servers.restart_handoff.address,
                    Change::UserStyleRestartKill | Change::UserStyleStopBuildStart => {
                        app_servers.user_style_server(USER_PROFILE).address
                    }
                };
                let load = start_load(address, app.request_path, CONNECTIONS, false);
                tokio::time::sleep(Duration::from_secs(1)).await;
                let number = context.next_edit_number();
                let marker = match change {
                    Change::UserStyleRestartKill | Change::UserStyleStopBuildStart => {
                        app.write_user_style_edit(number)?
                    }
                    _ => app.write_edit(number)?,
                };
                load.watch_for(&marker);
                let started = std::time::Instant::now();
                match change {
                    Change::Hotswap => app_servers.daemon.did_save(&app.source_file).await?,
                    Change::RestartKill | Change::RestartHandoff => {
                        context.workspace.build_standalone(app).await?;
                        let style = if change == Change::RestartKill {
                            RestartStyle::KillAndRebind
                        } else {
                            RestartStyle::SocketHandoffGraceful
                        };
                        app_servers.restart_server(style).restart().await?;
                    }
                    Change::StopBuildStart => {
                        app_servers.restart_kill.terminate().await?;
                        context.workspace.build_standalone(app).await?;
                        app_servers.restart_kill.spawn()?;
                    }
                    Change::UserStyleRestartKill => {
                        context.workspace.build_user_style(app, USER_PROFILE).await?;
                        app_servers.user_style_server(USER_PROFILE).restart().await?;
                    }
                    Change::UserStyleStopBuildStart => {
                        let server = app_servers.user_style_server(USER_PROFILE);
                        server.terminate().await?;
                        context.workspace.build_user_style(app, USER_PROFILE).await?;
                        app_servers.user_style_server(USER_PROFILE).spawn()?;
                    }
                }
                let seen = load.wait_for_marker(Duration::from_secs(300)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let report = load.stop().await;
                let Some(seen) = seen else {
                    anyhow::bail!(
                        "{} {}: the new code never answered under load",
                        app.name,
                        change.label()
                    );
                };
                let change_ms = millis_between(started, seen);
                progress(format_args!(
                    "under load, round {}: {} {} ({}): {} answered, {} refused, {} broken, {} bad status, new code after {} ms",
                    round + 1,
                    app.name,
                    change.label(),
                    change.built(),
                    report.answered,
                    report.refused_connects,
                    report.broken_requests,
                    report.bad_statuses,
                    milliseconds(change_ms)
                ));
                reports.entry((app.name.clone(), change)).or_default().push((report, change_ms));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    let mut table = Table::new(&[
        "app",
        "change",
        "what is rebuilt",
        "requests lost (median per change; total)",
        "refused connects",
        "broken requests (of which on a reused connection)",
        "non-200",
        "answered",
        "new code after ms",
    ]);
    let median_of = |values: &[(LoadReport, f64)], field: &dyn Fn(&LoadReport) -> u64| -> String {
        let numbers: Vec<f64> = values.iter().map(|(report, _)| field(report) as f64).collect();
        format!("{:.0}", median(&numbers).unwrap_or(f64::NAN))
    };
    for app in &apps {
        for change in CHANGES {
            let values = reports.get(&(app.name.clone(), change)).cloned().unwrap_or_default();
            let total_lost: u64 = values.iter().map(|(report, _)| report.lost()).sum();
            let change_ms: Vec<f64> = values.iter().map(|(_, ms)| *ms).collect();
            table.push(vec![
                app.name.clone(),
                change.label().to_owned(),
                change.built().to_owned(),
                format!("{}; {total_lost}", median_of(&values, &LoadReport::lost)),
                median_of(&values, &|report| report.refused_connects + report.failed_connects),
                format!(
                    "{} ({})",
                    median_of(&values, &|report| report.broken_requests),
                    median_of(&values, &|report| report.broken_on_reused_connection)
                ),
                median_of(&values, &|report| report.bad_statuses),
                median_of(&values, &|report| report.answered),
                milliseconds(median(&change_ms).unwrap_or(f64::NAN)),
            ]);
            if change == Change::Hotswap {
                let lost_by = |other: Change| -> u64 {
                    reports
                        .get(&(app.name.clone(), other))
                        .map_or(0, |values| values.iter().map(|(report, _)| report.lost()).sum())
                };
                context.goals.push(Goal {
                    name: format!("{}: requests lost during a change, 32 connections", app.name),
                    target: "0 (restart: more)".into(),
                    measured: format!(
                        "{total_lost} in {} changes (kill + restart: axum binary {}, binary on hotswap's SDK {})",
                        values.len(),
                        lost_by(Change::UserStyleRestartKill),
                        lost_by(Change::RestartKill)
                    ),
                    met: Some(total_lost == 0),
                });
            }
        }
    }
    let mut section = Section::new("4. Requests lost during a change (32 connections)");
    section.tables.push(table);
    section.notes.push(format!(
        "{} rounds per app and change, rotated. {CONNECTIONS} keep-alive connections send `GET /` back to back from 1 s before the change until 1 s after the first new body; \
         no request is ever resent. A refused connect is retried after {} ms and counts once per attempt. \
         The axum binary is built with cargo's default dev profile here (see case 1).",
        context.effort.load_rounds,
        REFUSED_RETRY_DELAY.as_millis()
    ));
    section.notes.push(
        "Broken requests were sent on an open connection and got no response (reset or closed under them). \
         Those on a reused connection that was closed or reset under them are the ones a browser resends by itself for a GET (never for a POST)."
            .to_owned(),
    );
    context.sections.push(section);
    Ok(())
}
