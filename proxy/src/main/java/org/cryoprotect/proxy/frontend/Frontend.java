package org.cryoprotect.proxy.frontend;

import io.netty.channel.group.ChannelGroup;
import io.netty.handler.ssl.SslContext;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.proxy.backend.ServerConnector;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.pool.Pools;

/**
 * What every client handler shares: the configuration, TLS, the way to servers, the cancel keys and
 * the secrets. One instance per running proxy; {@code tls} is null when client TLS is off.
 */
public record Frontend(
    ProxyConfig config,
    SslContext tls,
    ServerConnector connector,
    CancelRegistry cancels,
    ClientSecrets secrets,
    Pools pools,
    ChannelGroup clients,
    AtomicInteger loggedIn) {}
