// Dubernetes ingress routing (nginx njs module; works with njs 0.7 and later).
//
// Picks the replica for a request from the pod's endpoint files (read by
// ingress-endpoints.js, shared with the TCP listeners' router): replicas
// come and go without an nginx reload.
import endpoints from 'ingress-endpoints.js';

// Pod names are DNS labels (validated by the API); anything else reads nothing.
var POD = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
var IDEMPOTENT = { GET: 1, HEAD: 1, OPTIONS: 1, PUT: 1, DELETE: 1, TRACE: 1 };

function servers(r) {
    var pod = r.variables.dub_pod;
    if (!pod || !POD.test(pod)) {
        return [];
    }
    return endpoints.servers(pod);
}

// The replica for this request ("" when none is ready).
function backend(r) {
    return endpoints.pick(servers(r));
}

// After a replica failed the connection: another one, for idempotent methods only.
function retry(r) {
    if (!IDEMPOTENT[r.method]) {
        return '';
    }
    var failed = r.variables.upstream_addr || '';
    return endpoints.pick(servers(r).filter(function (s) {
        return s !== failed;
    }));
}

export default { backend: backend, retry: retry };
