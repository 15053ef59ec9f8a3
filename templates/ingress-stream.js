// Dubernetes TCP listener (nginx's stream njs module, njs 0.7 and later).
//
// Picks the replica for each new TCP connection of an `expose` listener from
// the endpoint files of its listen port, tcp_<port>.{a,b}, read by
// ingress-endpoints.js (shared with the HTTP router; ready replicas only, as
// for HTTP). No ready replica: "" and nginx closes the connection.
import endpoints from 'ingress-endpoints.js';

var PORT = /^[0-9]{1,5}$/;

// The replica for this connection ("" when none is ready).
function backend(s) {
    var port = s.variables.server_port;
    if (!port || !PORT.test(port)) {
        return '';
    }
    return endpoints.pick(endpoints.servers('tcp_' + port));
}

export default { backend: backend };
