package org.cryoprotect.proxy.examples;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.nio.file.Path;
import java.time.Duration;

/** A HikariCP pool whose connections log in to CryoProxy with a token (TokenFilePlugin). */
public final class TokenPoolExample {
  private TokenPoolExample() {}

  /**
   * {@code jdbcUrl} such as {@code jdbc:postgresql://localhost:6432/app}; {@code tokenLife} the
   * lifetime of the tokens written to {@code tokenFile}.
   */
  public static HikariDataSource pool(String jdbcUrl, Path tokenFile, Duration tokenLife) {
    HikariConfig config = new HikariConfig();
    config.setJdbcUrl(jdbcUrl);
    config.setUsername("authenticator"); // a login of auth.jwt.users
    config.addDataSourceProperty("authenticationPluginClassName", TokenFilePlugin.class.getName());
    config.addDataSourceProperty(TokenFilePlugin.TOKEN_FILE, tokenFile.toString());
    // Replace each connection before its token expires (HikariCP's minimum is 30 s); the proxy
    // would otherwise end it with 28000 at its next transaction after the expiry.
    config.setMaxLifetime(Math.max(30_000, tokenLife.toMillis() * 2 / 3));
    config.setMaximumPoolSize(10);
    return new HikariDataSource(config);
  }
}
