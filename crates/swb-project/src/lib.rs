//! Switchboard projects: a folder with a `switchboard.toml` manifest that says what
//! function it publishes and how it is built and served; the templates `swb new`
//! makes them from; running their builds. The CLI (`swb new`, `swb deploy`,
//! `swb serve`, `swb dev`) drives these and talks to the server.

mod manifest;
mod run;
mod template;

pub use manifest::{
    Build, FILE, Kind, Limits, Manifest, ManifestError, Project, Schemas, Serve, read_schema,
};
pub use template::{TEMPLATES, Template};
