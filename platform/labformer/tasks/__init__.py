"""One LightningModule per family, registered under kind "task" (imported on demand by `registry`)."""
