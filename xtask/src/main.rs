//! `cargo xtask demo|test|bench|image`: set-up, build and orchestration.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
