//! Case 1d: save → the new content visible in the page, observed from the page in headless
//! Chromium (`hotswap_tests::browser`), for a handler change and for a stylesheet change of
//! `examples/site`, each beside its baseline in the same round: a handler change with live
//! reload beside `hotswap reload` then a reload of the page by hand (the fastest a user gets the
//! new page without live reload), and a stylesheet swapped in place beside the same save followed
//! by a reload of the page.

use std::time::Duration;

use hotswap_tests::binaries::App;
use hotswap_tests::browser::{Browser, PAINTED_AT, epoch_millis};

use super::{BenchContext, progress};
use crate::daemon_process::DaemonProcess;
use crate::report::{Goal, Section, Table, median_and_range, ratio};
use crate::statistics::{Summary, median_ratio};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECTED: &str = "window.__hotswapLiveReload && window.__hotswapLiveReload.connected";
const HEADLINE: &str = "const HEADLINE: &str = \"Welcome to the hotswap site\";";
const ACCENT: &str = "--accent: rgb(37, 99, 235);";

pub(crate) async fn run(context: &mut BenchContext) -> anyhow::Result<()> {
    let repository = hotswap_tests::artifacts::repository_root();
    let app = App::copy_of_crate(
        &repository.join("examples/site"),
        "bench-site",
        "[swap]\nsmoke_path = \"/health\"\n",
    );
    let config = app.path("hotswap.toml");
    // The daemon's defaults but the debounce, as the save → served case measures it.
    let text = std::fs::read_to_string(&config)?;
    std::fs::write(&config, text.replacen("[build]\n", "[build]\ndebounce_ms = 0\n", 1))?;
    progress("browser: building examples/site and starting its daemon");
    let daemon = DaemonProcess::start(
        &context.hotswap_binary,
        &app.directory,
        &context.log_path("browser-daemon.log"),
    )
    .await?;
    let result = measure(context, &app, &daemon).await;
    daemon.stop().await?;
    result
}

/// The measurements of one run, in milliseconds, one per round.
#[derive(Debug, Default)]
struct Samples {
    handler_live: Vec<f64>,
    handler_manual: Vec<f64>,
    handler_build: Vec<f64>,
    handler_manual_build: Vec<f64>,
    stylesheet_live: Vec<f64>,
    stylesheet_reload: Vec<f64>,
}

async fn measure(
    context: &mut BenchContext,
    app: &App,
    daemon: &DaemonProcess,
) -> anyhow::Result<()> {
    let url = format!("http://{}/", daemon.address);
    let mut browser = Browser::launch().await.map_err(anyhow::Error::msg)?;
    browser.open("page", &url).await.map_err(anyhow::Error::msg)?;
    wait(&mut browser, CONNECTED).await?;
    let source = app.path("src/lib.rs");
    let stylesheet = app.path("assets/site.css");
    let original_source = std::fs::read_to_string(&source)?;
    let original_stylesheet = std::fs::read_to_string(&stylesheet)?;
    let mut samples = Samples::default();
    let rounds = context.effort.save_rounds;
    for round in 0..rounds {
        // The order alternates, so that neither side always runs first.
        for first_live in [round % 2 == 0, round % 2 != 0] {
            let marker = format!("edit {}", context.next_edit_number());
            let edited = original_source.replacen(
                HEADLINE,
                &format!("const HEADLINE: &str = \"{marker}\";"),
                1,
            );
            std::fs::write(&source, edited)?;
            let headline_shows = format!(
                "document.getElementById('headline').textContent === '{marker}' && {PAINTED_AT}"
            );
            let saved_at = epoch_millis();
            if first_live {
                // Live reload: the save message, and the page follows by itself.
                daemon.did_save(&source).await?;
                let shown_at = wait(&mut browser, &headline_shows).await?;
                samples.handler_live.push(shown_at - saved_at);
                let build =
                    daemon.status().await?.last_build.map_or(f64::NAN, |build| build.duration_ms);
                samples.handler_build.push(build);
            } else {
                // By hand: `hotswap reload` answers once the new code serves; then the page is
                // reloaded (as the user would press F5 at that very moment).
                daemon.reload().await?;
                reload_page(&mut browser).await?;
                let shown_at = wait(&mut browser, &headline_shows).await?;
                samples.handler_manual.push(shown_at - saved_at);
                let build =
                    daemon.status().await?.last_build.map_or(f64::NAN, |build| build.duration_ms);
                samples.handler_manual_build.push(build);
            }
            wait(&mut browser, CONNECTED).await?;
        }
        for in_place in [round % 2 == 0, round % 2 != 0] {
            let number = context.next_edit_number() % 200;
            let color = format!("rgb({number}, 20, 30)");
            std::fs::write(
                &stylesheet,
                original_stylesheet.replacen(ACCENT, &format!("--accent: {color};"), 1),
            )?;
            let restyled = format!(
                "getComputedStyle(document.getElementById('headline')).color === '{color}' && ({})",
                if in_place { "Date.now()" } else { PAINTED_AT }
            );
            let saved_at = epoch_millis();
            daemon.did_save_asset(&stylesheet).await?;
            if !in_place {
                // Without the swap in place: the save, then a reload of the page.
                reload_page(&mut browser).await?;
            }
            let restyled_at = wait(&mut browser, &restyled).await?;
            let samples = if in_place {
                &mut samples.stylesheet_live
            } else {
                &mut samples.stylesheet_reload
            };
            samples.push(restyled_at - saved_at);
            wait(&mut browser, CONNECTED).await?;
        }
        progress(format_args!("browser: round {} of {rounds}", round + 1));
    }
    std::fs::write(&source, original_source)?;
    std::fs::write(&stylesheet, original_stylesheet)?;
    browser.quit().await;
    report(context, &samples);
    Ok(())
}

/// Polls `expression` in the page until it is truthy; its value is a time in ms since the epoch.
/// Reloads the page as the user would. The page's own live reload may navigate at the same
/// moment, which ends the evaluation with "Execution context was destroyed": a reload happened,
/// as asked.
async fn reload_page(browser: &mut Browser) -> anyhow::Result<()> {
    match browser.evaluate("page", "location.reload()").await {
        Ok(_) => Ok(()),
        Err(error) if error.contains("Execution context was destroyed") => Ok(()),
        Err(error) => Err(anyhow::Error::msg(error)),
    }
}

async fn wait(browser: &mut Browser, expression: &str) -> anyhow::Result<f64> {
    let value =
        browser.wait_for("page", expression, STEP_TIMEOUT).await.map_err(anyhow::Error::msg)?;
    Ok(value.as_f64().unwrap_or(f64::NAN))
}

fn report(context: &mut BenchContext, samples: &Samples) {
    let mut table = Table::new(&[
        "change",
        "how the page gets it",
        "save → visible in the page, ms",
        "÷ baseline",
    ]);
    let handler_ratio =
        median_ratio(&samples.handler_live, &samples.handler_manual).unwrap_or(f64::NAN);
    let stylesheet_ratio =
        median_ratio(&samples.stylesheet_live, &samples.stylesheet_reload).unwrap_or(f64::NAN);
    let stylesheet_vs_handler =
        median_ratio(&samples.stylesheet_live, &samples.handler_live).unwrap_or(f64::NAN);
    table.push(vec![
        "handler (`src/lib.rs`)".into(),
        "**live reload: the page reloads itself after the swap**".into(),
        median_and_range(Summary::of(&samples.handler_live)),
        ratio(handler_ratio),
    ]);
    table.push(vec![
        "handler (`src/lib.rs`)".into(),
        "baseline: `hotswap reload`, then the page reloaded at once".into(),
        median_and_range(Summary::of(&samples.handler_manual)),
        "1.00×".into(),
    ]);
    let share = |totals: &[f64], builds: &[f64]| -> Vec<f64> {
        totals.iter().zip(builds).map(|(total, build)| total - build).collect()
    };
    let live_share = share(&samples.handler_live, &samples.handler_build);
    let manual_share = share(&samples.handler_manual, &samples.handler_manual_build);
    table.push(vec![
        "handler: cargo's build in these".into(),
        "live reload / baseline (the daemon's last build)".into(),
        format!(
            "{} / {}",
            median_and_range(Summary::of(&samples.handler_build)),
            median_and_range(Summary::of(&samples.handler_manual_build))
        ),
        String::new(),
    ]);
    table.push(vec![
        "handler: the rest (save → visible − build)".into(),
        "live reload / baseline".into(),
        format!(
            "{} / {}",
            median_and_range(Summary::of(&live_share)),
            median_and_range(Summary::of(&manual_share))
        ),
        ratio(median_ratio(&live_share, &manual_share).unwrap_or(f64::NAN)),
    ]);
    table.push(vec![
        "stylesheet (`assets/site.css`)".into(),
        "**swapped in place, no build**".into(),
        median_and_range(Summary::of(&samples.stylesheet_live)),
        format!(
            "{} ({} of the handler change)",
            ratio(stylesheet_ratio),
            ratio(stylesheet_vs_handler)
        ),
    ]);
    table.push(vec![
        "stylesheet (`assets/site.css`)".into(),
        "baseline: the save, then the page reloaded".into(),
        median_and_range(Summary::of(&samples.stylesheet_reload)),
        "1.00×".into(),
    ]);
    let handler_median = crate::statistics::median(&samples.handler_live).unwrap_or(f64::NAN);
    let stylesheet_median = crate::statistics::median(&samples.stylesheet_live).unwrap_or(f64::NAN);
    context.goals.push(Goal {
        name: "site: save → handler change visible in the page (median)".into(),
        target: "≤ 1000 ms".into(),
        measured: format!("{} ms", crate::report::milliseconds(handler_median)),
        met: Some(handler_median <= 1000.0),
    });
    context.goals.push(Goal {
        name: "site: save → stylesheet change visible in the page (median)".into(),
        target: "≤ 200 ms".into(),
        measured: format!("{} ms", crate::report::milliseconds(stylesheet_median)),
        met: Some(stylesheet_median <= 200.0),
    });
    let mut section = Section::new("1d. Save → new content visible in the page");
    section.tables.push(table);
    section.notes.push(format!(
        "`examples/site` under the release `hotswap serve` (dev profile for the app, `debounce_ms = 0`), one page open in headless \
         Chromium (playwright-core), {} rounds, each measuring both sides of each pair in alternating order. Timed from right before \
         the `didSave` message (or the `reload` request) to the moment the page shows the change by its own clock: the first paint \
         of the reloaded page, or, for the stylesheet swapped in place, the first poll (every 10 ms) that sees the new computed style.",
        samples.handler_live.len()
    ));
    context.sections.push(section);
}
