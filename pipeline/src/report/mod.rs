//! Sections of the report that read one stage's tables. `analyse` puts
//! them in the run's `report/report.md`; the stage itself may write its own
//! section too (`sml/report.md`). Kept apart from the stages so that
//! `analyse` imports no other stage.

pub mod critic;
pub mod sml;
pub mod transfer;
