package org.cryoprotect.proxy.testing;

import java.util.Optional;
import org.cryoprotect.embedded.PgCluster;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.junit.jupiter.api.extension.TestWatcher;
import org.junit.platform.commons.support.AnnotationSupport;

/**
 * Starts one {@link PgCluster} per test class and closes it after all tests; on a failed test it
 * prints the tail of every server log, since the PostgreSQL side of a failure is otherwise lost
 * with the temp directory.
 *
 * <p>Configured either by {@link PgTest} on the class, or programmatically when the class needs
 * more than the annotation offers:
 *
 * <pre>{@code
 * @RegisterExtension
 * static final PgExtension PG = new PgExtension(PgCluster.builder().tls(myCerts).replicas(2));
 * ... PG.cluster().primary() ...
 * }</pre>
 */
public final class PgExtension
    implements BeforeAllCallback, AfterAllCallback, ParameterResolver, TestWatcher {

  private static final ExtensionContext.Namespace NAMESPACE =
      ExtensionContext.Namespace.create(PgExtension.class);
  private static final String KEY = "cluster";
  private static final int LOG_LINES = 200;

  private final PgCluster.Builder builder;
  private volatile PgCluster cluster;

  /** Configured from {@link PgTest} on the test class (or its defaults). */
  public PgExtension() {
    this(null);
  }

  public PgExtension(PgCluster.Builder builder) {
    this.builder = builder;
  }

  /** The running cluster; only between beforeAll and afterAll. */
  public PgCluster cluster() {
    if (cluster == null) {
      throw new IllegalStateException("no cluster: not inside a test class using this extension");
    }
    return cluster;
  }

  @Override
  public void beforeAll(ExtensionContext context) {
    // A @Nested class sees its enclosing class's cluster through the store's parent chain.
    if (find(context) != null) {
      return;
    }
    PgCluster.Builder config = builder != null ? builder : fromAnnotation(context);
    cluster = config.start();
    context.getStore(NAMESPACE).put(KEY, cluster);
  }

  @Override
  public void afterAll(ExtensionContext context) {
    // remove() only looks at this context's own store, so a @Nested class never closes its
    // enclosing class's cluster.
    PgCluster own = context.getStore(NAMESPACE).remove(KEY, PgCluster.class);
    if (own != null) {
      own.close();
      cluster = null;
    }
  }

  @Override
  public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
    return parameter.getParameter().getType() == PgCluster.class;
  }

  @Override
  public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
    PgCluster found = find(context);
    if (found == null) {
      throw new IllegalStateException("PgCluster is only available inside a test class");
    }
    return found;
  }

  @Override
  public void testFailed(ExtensionContext context, Throwable cause) {
    PgCluster found = find(context);
    if (found != null) {
      System.err.println(
          "===== PostgreSQL logs after failure of "
              + context.getDisplayName()
              + " ("
              + context.getRequiredTestClass().getName()
              + ") =====\n"
              + found.logTails(LOG_LINES));
    }
  }

  private static PgCluster find(ExtensionContext context) {
    return context.getStore(NAMESPACE).get(KEY, PgCluster.class);
  }

  private static PgCluster.Builder fromAnnotation(ExtensionContext context) {
    Optional<PgTest> annotation =
        AnnotationSupport.findAnnotation(context.getRequiredTestClass(), PgTest.class);
    PgCluster.Builder config = PgCluster.builder();
    annotation.ifPresent(
        a -> {
          config.replicas(a.replicas()).tls(a.tls()).auth(a.auth());
          for (String setting : a.settings()) {
            int eq = setting.indexOf('=');
            if (eq <= 0) {
              throw new IllegalArgumentException("@PgTest setting must be name=value: " + setting);
            }
            config.setting(setting.substring(0, eq).strip(), setting.substring(eq + 1).strip());
          }
        });
    return config;
  }
}
