package org.cryoprotect.proxy.examples;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import org.postgresql.plugin.AuthenticationPlugin;
import org.postgresql.plugin.AuthenticationRequestType;
import org.postgresql.util.PSQLException;
import org.postgresql.util.PSQLState;

/**
 * Gives pgJDBC the current token each time it opens a physical connection to CryoProxy. The token
 * is read from the file named by the connection property {@code cryoproxyTokenFile}, which whatever
 * issues your tokens keeps fresh (a sidecar, a projected Kubernetes secret, a cron job). With
 * HikariCP, set {@code maxLifetime} below the token's lifetime: every connection is replaced, and
 * so logs in with a fresh token, before its token expires.
 */
public final class TokenFilePlugin implements AuthenticationPlugin {
  public static final String TOKEN_FILE = "cryoproxyTokenFile";
  private final Path tokenFile;

  public TokenFilePlugin(Properties info) {
    this.tokenFile = Path.of(info.getProperty(TOKEN_FILE, "cryoproxy.token"));
  }

  @Override
  public char[] getPassword(AuthenticationRequestType type) throws PSQLException {
    try {
      return Files.readString(tokenFile, StandardCharsets.US_ASCII).trim().toCharArray();
    } catch (IOException e) {
      throw new PSQLException(
          "cannot read the token file " + tokenFile, PSQLState.CONNECTION_UNABLE_TO_CONNECT, e);
    }
  }
}
