package org.cryoprotect.proxy.backend;

import io.netty.buffer.ByteBufAllocator;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.util.InsecureTrustManagerFactory;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.ServerTls;
import org.cryoprotect.proxy.config.ProxyConfig.ServerTlsMode;

/**
 * TLS towards PostgreSQL, with libpq's sslmode meanings: {@code prefer} and {@code require} encrypt
 * without checking who answers, {@code verify-ca} checks the chain against {@code ca_file}, {@code
 * verify-full} also checks the host name against the certificate.
 */
public final class ServerTlsContext {
  private final ServerTlsMode mode;
  private final SslContext context;

  public ServerTlsContext(ServerTls tls) throws SSLException {
    this.mode = tls.mode();
    if (mode == ServerTlsMode.DISABLE) {
      this.context = null;
      return;
    }
    SslContextBuilder builder = SslContextBuilder.forClient().protocols("TLSv1.3", "TLSv1.2");
    if (mode == ServerTlsMode.VERIFY_CA || mode == ServerTlsMode.VERIFY_FULL) {
      builder.trustManager(tls.caFile().toFile());
    } else {
      builder.trustManager(InsecureTrustManagerFactory.INSTANCE);
    }
    this.context = builder.build();
  }

  public boolean enabled() {
    return context != null;
  }

  /** Whether a server answering 'N' to SSLRequest must be refused. */
  public boolean required() {
    return mode != ServerTlsMode.DISABLE && mode != ServerTlsMode.PREFER;
  }

  SslHandler newHandler(ByteBufAllocator alloc, Endpoint node) {
    SslHandler handler = context.newHandler(alloc, node.host(), node.port());
    if (mode == ServerTlsMode.VERIFY_FULL) {
      SSLEngine engine = handler.engine();
      SSLParameters parameters = engine.getSSLParameters();
      parameters.setEndpointIdentificationAlgorithm("HTTPS");
      engine.setSSLParameters(parameters);
    }
    return handler;
  }
}
