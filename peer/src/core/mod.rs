//! Sans-IO peer core.
