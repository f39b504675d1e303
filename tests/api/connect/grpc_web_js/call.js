// One call with Google's grpc-web client, for tests/test_grpc_web.py.
//
// Usage: node call.js BASE_URL FORMAT PATH REQUEST_BASE64 STREAM_TIMEOUT
//   FORMAT          "text" (application/grpc-web-text, the client's default) or "binary"
//   STREAM_TIMEOUT  "" for a unary call, else a server stream read until its
//                   grpc-timeout (e.g. "1S") ends it
// Prints {"messages": [base64...], "status": {"code", "message"}} as JSON.
// Messages stay opaque bytes: the test encodes and decodes them with protobuf.
// Under Node (xhr2) a stream's messages arrive when the response ends, hence the
// timeout: in a browser they arrive as they come.
global.XMLHttpRequest = require('xhr2');
const grpcWeb = require('grpc-web');

const [baseUrl, format, path, requestB64, streamTimeout] = process.argv.slice(2);
const client = new grpcWeb.GrpcWebClientBase({format});
const descriptor = new grpcWeb.MethodDescriptor(
  path,
  streamTimeout ? grpcWeb.MethodType.SERVER_STREAMING : grpcWeb.MethodType.UNARY,
  Object,
  Object,
  (request) => request,
  (bytes) => Buffer.from(bytes).toString('base64'));
const request = new Uint8Array(Buffer.from(requestB64, 'base64'));
const out = {messages: [], status: null};
const done = () => {
  console.log(JSON.stringify(out));
  process.exit(0);
};

if (!streamTimeout) {
  client.rpcCall(baseUrl + path, request, {}, descriptor, (error, response) => {
    out.status = error ? {code: error.code, message: error.message} : {code: 0, message: ''};
    if (!error) out.messages.push(response);
    done();
  });
} else {
  const metadata = {'grpc-timeout': streamTimeout};
  const stream = client.serverStreaming(baseUrl + path, request, metadata, descriptor);
  stream.on('data', (message) => out.messages.push(message));
  stream.on('status', (status) => { out.status = {code: status.code, message: status.details}; });
  stream.on('error', (error) => {
    out.status = {code: error.code, message: error.message};
    done();
  });
  stream.on('end', done);
}
