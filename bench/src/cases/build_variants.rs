//! Case 1c: what the profile and the linker add to the build of a one-line change, on each side:
//! the handler library hotswap builds against the app as an ordinary axum binary, each with the
//! examples' profile and with cargo's default dev profile, each linked by rustc's default linker
//! and by GNU ld (rustc's default on Linux before Rust 1.90). Builds only, no servers: it shows
//! how the ratio of case 1 moves with another profile or linker.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{BenchContext, progress, rotated};
use crate::bench_workspace::BenchApp;
use crate::report::{Section, Table, median_and_range, milliseconds, ratio};
use crate::statistics::{Summary, median_ratio};
use crate::user_style::{BuildProfile, Linker, linker_of};

/// What is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    /// The app's handler crate as a cdylib, as the daemon builds it.
    HandlerLibrary,
    /// The app as an ordinary axum binary.
    AxumBinary,
}

type Variant = (Side, BuildProfile, Linker);

/// Every side, profile and linker, in the order of the report's rows.
fn variants(linkers: &[Linker]) -> Vec<Variant> {
    let mut variants = Vec::new();
    for profile in [BuildProfile::ExamplesProfile, BuildProfile::CargoDefault] {
        for linker in linkers {
            for side in [Side::HandlerLibrary, Side::AxumBinary] {
                variants.push((side, profile, *linker));
            }
        }
    }
    variants
}

/// Writes a new edit to the source `side` builds, builds it, and returns the build's time in
/// milliseconds and the artifact.
async fn build(
    context: &mut BenchContext,
    app: &BenchApp,
    (side, profile, linker): Variant,
) -> anyhow::Result<(f64, PathBuf)> {
    let number = context.next_edit_number();
    let workspace = &context.workspace;
    match side {
        Side::HandlerLibrary => {
            app.write_edit(number)?;
            let (elapsed, library) = workspace.build_handler_with(app, profile, linker).await?;
            Ok((elapsed.as_secs_f64() * 1000.0, library))
        }
        Side::AxumBinary => {
            app.write_user_style_edit(number)?;
            let elapsed = workspace.build_user_style_with(app, profile, linker).await?;
            let binary = workspace.user_style.binary(&app.user_style.package, profile, linker);
            Ok((elapsed.as_secs_f64() * 1000.0, binary))
        }
    }
}

pub(crate) async fn run(context: &mut BenchContext) -> anyhow::Result<()> {
    let apps = context.workspace.apps_of_every_case();
    // The first builds compile every dependency in the new target directories; GNU ld is left
    // out when rustc cannot be told to use it (before Rust 1.90, or on other targets).
    let mut linkers = Linker::ALL.to_vec();
    let mut gnu_ld_missing = None;
    let mut artifacts: BTreeMap<(String, Variant), PathBuf> = BTreeMap::new();
    for app in &apps {
        progress(format_args!(
            "profiles and linkers: building {} and {} each way (the first time builds every dependency)",
            app.name, app.user_style.package
        ));
        for variant in variants(&linkers.clone()) {
            match build(context, app, variant).await {
                Ok((_, artifact)) => {
                    artifacts.insert((app.name.clone(), variant), artifact);
                }
                Err(error) if variant.2 == Linker::GnuLd => {
                    let reason = error.to_string().lines().take(3).collect::<Vec<_>>().join(" ");
                    progress(format_args!("GNU ld left out: {reason}"));
                    gnu_ld_missing = Some(reason);
                    linkers.retain(|linker| *linker != Linker::GnuLd);
                }
                Err(error) => return Err(error),
            }
        }
    }
    let variants = variants(&linkers);
    let mut samples: BTreeMap<(String, Variant), Vec<f64>> = BTreeMap::new();
    for round in 0..context.effort.build_variant_rounds {
        for app in &apps {
            for variant in rotated(&variants, round) {
                let (elapsed, _) = build(context, app, variant).await?;
                progress(format_args!(
                    "profiles and linkers, round {}: {} {variant:?}: {} ms",
                    round + 1,
                    app.name,
                    milliseconds(elapsed)
                ));
                samples.entry((app.name.clone(), variant)).or_default().push(elapsed);
            }
        }
    }
    for app in &apps {
        app.restore()?;
    }

    let mut table = Table::new(&[
        "app",
        "profile",
        "linker",
        "handler library (cdylib): build ms (min–max)",
        "axum binary: build ms (min–max)",
        "binary ÷ library",
    ]);
    let mut section = Section::new("1c. Build of a one-line change by profile and linker");
    for app in &apps {
        let get = |variant: Variant| {
            samples.get(&(app.name.clone(), variant)).cloned().unwrap_or_default()
        };
        for profile in [BuildProfile::ExamplesProfile, BuildProfile::CargoDefault] {
            for linker in &linkers {
                let library = get((Side::HandlerLibrary, profile, *linker));
                let binary = get((Side::AxumBinary, profile, *linker));
                table.push(vec![
                    app.name.clone(),
                    profile.label().to_owned(),
                    linker.label().to_owned(),
                    median_and_range(Summary::of(&library)),
                    median_and_range(Summary::of(&binary)),
                    ratio(median_ratio(&binary, &library).unwrap_or(f64::NAN)),
                ]);
            }
        }
        let hotswap_default =
            get((Side::HandlerLibrary, BuildProfile::ExamplesProfile, Linker::RustcDefault));
        if linkers.contains(&Linker::GnuLd) {
            let untuned_binary = get((Side::AxumBinary, BuildProfile::CargoDefault, Linker::GnuLd));
            let library_gnu_ld =
                get((Side::HandlerLibrary, BuildProfile::ExamplesProfile, Linker::GnuLd));
            section.notes.push(format!(
                "{}: the axum binary with cargo's default dev profile linked by GNU ld (a user without tuning, on Rust before 1.90) took {} the build of \
                 the handler library with the examples' profile and rustc's default linker, and {} that library's build with GNU ld.",
                app.name,
                ratio(median_ratio(&untuned_binary, &hotswap_default).unwrap_or(f64::NAN)),
                ratio(median_ratio(&untuned_binary, &library_gnu_ld).unwrap_or(f64::NAN)),
            ));
        }
    }
    section.tables.push(table);
    section.notes.push(format!(
        "{} rounds after one warm-up build of each; in each round every build of every app ran once, in an order rotated from round to round, \
         each after a new one-line edit of the source it builds (as in case 1). Ratios are medians of per-round ratios. No server runs meanwhile.",
        context.effort.build_variant_rounds
    ));
    let linker_note = |linker: Linker| {
        let made: Vec<String> = apps
            .iter()
            .filter_map(|app| {
                artifacts.get(&(
                    app.name.clone(),
                    (Side::AxumBinary, BuildProfile::CargoDefault, linker),
                ))
            })
            .map(|artifact| linker_of(artifact))
            .collect();
        made.first().cloned().unwrap_or_else(|| "unknown".to_owned())
    };
    let mut linkers_note = format!(
        "Cargo's default dev profile is full debug info for the app and every dependency (for the handler library: the examples' workspace with \
         `--config profile.dev.debug=2 --config profile.dev.package.\"*\".debug=2`, as in case 2); the examples' profile is `debug = \"line-tables-only\"` \
         for the app and no debug info for dependencies. rustc's default linker made {} (read from the `.comment` section of the binaries)",
        linker_note(Linker::RustcDefault)
    );
    match &gnu_ld_missing {
        None => linkers_note.push_str(&format!(
            "; the GNU ld rows pass `-C linker-features=-lld` (cargo `build.rustflags`), which links with the C compiler and GNU ld as rustc did \
             before 1.90 on Linux: {}.",
            linker_note(Linker::GnuLd)
        )),
        Some(reason) => linkers_note.push_str(&format!(
            "; GNU ld was left out: rustc refused `-C linker-features=-lld` ({reason})."
        )),
    }
    section.notes.push(linkers_note);
    context.sections.push(section);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_side_profile_and_linker_once() {
        let all = variants(&Linker::ALL);
        assert_eq!(all.len(), 8);
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 8);
        assert_eq!(
            all[0],
            (Side::HandlerLibrary, BuildProfile::ExamplesProfile, Linker::RustcDefault)
        );
        assert_eq!(variants(&[Linker::RustcDefault]).len(), 4);
    }
}
