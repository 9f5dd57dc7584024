use crate::cli::{CaptureArgs, KubeFlags};
use crate::error::PluginError;

pub async fn from_cli(_kube: &KubeFlags, _args: &CaptureArgs) -> Result<(), PluginError> {
    Err(PluginError::bad("capture", "not yet"))
}
