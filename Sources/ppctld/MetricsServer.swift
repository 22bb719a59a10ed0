import NIOCore
import NIOHTTP1
import NIOPosix

/// A small HTTP/1.1 server answering `GET /metrics` with the exporter's text
/// (`text/plain; version=0.0.4`), 404 for any other path and 405 for other methods.
/// It runs on one event-loop thread of its own, created in the daemon's network
/// namespace (the socket is bound where ppctld runs).
final class MetricsServer {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?

    /// Listens on host:port. Throws if the address cannot be bound.
    init(host: String, port: Int, exporter: MetricsExporter) throws {
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(exporter: exporter))
                }
            }
            .bind(host: host, port: port).wait()
    }

    /// The address it listens on.
    var localAddress: SocketAddress? { channel?.localAddress }

    /// Closes the socket and stops the thread.
    func shutdown() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let exporter: MetricsExporter
        private var request: HTTPRequestHead?

        init(exporter: MetricsExporter) { self.exporter = exporter }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): request = head
            case .body: break
            case .end:
                guard let head = request else { return }
                request = nil
                let (status, body) = answer(head)
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
                context.write(
                    wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                let keepAlive = head.isKeepAlive
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                    if !keepAlive { context.close(promise: nil) }
                }
            }
        }

        private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String) {
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            guard path == "/metrics" else { return (.notFound, "not found: try /metrics\n") }
            guard head.method == .GET || head.method == .HEAD else { return (.methodNotAllowed, "GET /metrics\n") }
            do { return (.ok, try exporter.render()) } catch { return (.internalServerError, "\(error)\n") }
        }
    }
}
