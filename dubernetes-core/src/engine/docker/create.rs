//! What a [`ContainerSpec`] becomes on Docker: the create body, its mounts
//! and its limits.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig, Mount as EngineMount,
    MountTmpfsOptions, MountType, MountVolumeOptions, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::engine::{ContainerLimits, ContainerSpec, Mount};

/// A replica's mounts, as the engine takes them (a container's `HostConfig.Mounts`
/// and a Swarm task's `ContainerSpec.Mounts` are the same type).
pub(in crate::engine) fn mounts_of(spec: &ContainerSpec) -> Option<Vec<EngineMount>> {
    (!spec.mounts.is_empty()).then(|| {
        spec.mounts
            .iter()
            .map(|m| match m {
                Mount::Volume { source, target, labels } => EngineMount {
                    typ: Some(MountType::VOLUME),
                    source: Some(source.clone()),
                    target: Some(target.clone()),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(labels.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Mount::Tmpfs { target, bytes } => EngineMount {
                    typ: Some(MountType::TMPFS),
                    target: Some(target.clone()),
                    tmpfs_options: Some(MountTmpfsOptions {
                        size_bytes: i64::try_from(*bytes).ok(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            })
            .collect()
    })
}

/// Writes container limits into a host config.
fn apply_limits(limits: &ContainerLimits, host: &mut HostConfig) {
    host.log_config = Some(HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), limits.log_max_bytes.to_string()),
            ("max-file".to_string(), limits.log_max_files.to_string()),
        ])),
    });
    // The engine reads 0 or -1 as "no limit".
    host.pids_limit = Some(limits.pids.map_or(-1, i64::from));
    if limits.no_new_privileges {
        host.security_opt
            .get_or_insert_with(Vec::new)
            .push("no-new-privileges:true".into());
    }
}

pub(super) fn body_of(spec: &ContainerSpec) -> ContainerCreateBody {
    let port = format!("{}/tcp", spec.port);
    let mut host_config = HostConfig {
        network_mode: Some(spec.network.clone()),
        memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
        nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
        port_bindings: spec.publish.map(|at| {
            let binding = |at: std::net::SocketAddr| {
                Some(vec![PortBinding {
                    host_ip: Some(at.ip().to_string()),
                    host_port: Some(if at.port() == 0 {
                        String::new()
                    } else {
                        at.port().to_string()
                    }),
                }])
            };
            let mut bindings = HashMap::from([(port.clone(), binding(at))]);
            if let Some(tls) = spec.publish_tls {
                bindings.insert("443/tcp".to_string(), binding(tls));
            }
            bindings
        }),
        // `Binds`, not `Mounts`: the engine makes a missing host directory
        // (this process may see another filesystem than the engine's host).
        binds: (!spec.binds.is_empty() || !spec.secrets.files.is_empty()).then(|| {
            spec.binds
                .iter()
                .map(|b| format!("{}:{}:rw", b.host.display(), b.container))
                .chain(
                    spec.secrets
                        .files
                        .iter()
                        .map(|b| format!("{}:{}:ro", b.host.display(), b.container)),
                )
                .collect()
        }),
        mounts: mounts_of(spec),
        dns: (!spec.dns.is_empty()).then(|| spec.dns.iter().map(ToString::to_string).collect()),
        restart_policy: spec.restart.then_some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    apply_limits(&spec.limits, &mut host_config);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: crate::engine::env_of(spec),
        labels: Some(spec.labels.clone()),
        exposed_ports: Some({
            if spec.publish_tls.is_some() {
                vec![port, "443/tcp".to_string()]
            } else {
                vec![port]
            }
        }),
        entrypoint: spec.command.clone(),
        cmd: spec.args.clone(),
        host_config: Some(host_config),
        // Only replicas name their endpoint (the ingress joins through network_mode).
        networking_config: spec.publish.is_none().then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    ipam_config: spec.ip.map(|ip| EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}
