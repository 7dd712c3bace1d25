package lakehouse.agent;

import static net.bytebuddy.matcher.ElementMatchers.named;
import static net.bytebuddy.matcher.ElementMatchers.takesArgument;
import static net.bytebuddy.matcher.ElementMatchers.takesArguments;

import java.lang.instrument.Instrumentation;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import net.bytebuddy.agent.builder.AgentBuilder;
import net.bytebuddy.asm.Advice;
import net.bytebuddy.implementation.bytecode.assign.Assigner;

/**
 * Keeps every listening socket of a JVM on the loopback interface.
 *
 * <p>Some servers of the stack bind their ports to every interface whatever their configuration says
 * (Pinot 0.11's server query port). This agent rewrites, before it happens, each bind of a listening
 * socket to the wildcard address (or to no address) into a bind to 127.0.0.1 with the same port: NIO
 * server channels (Netty's NIO transport, Jetty) and classic server sockets alike. A bind to a specific
 * address is left as it is. Loaded with {@code -javaagent:lakehouse-loopback-agent.jar}.
 */
public final class LoopbackAgent {
    private LoopbackAgent() {}

    public static void premain(String args, Instrumentation inst) {
        new AgentBuilder.Default()
                .disableClassFormatChanges()
                .with(AgentBuilder.RedefinitionStrategy.RETRANSFORMATION)
                .with(AgentBuilder.InitializationStrategy.NoOp.INSTANCE)
                .with(AgentBuilder.TypeStrategy.Default.REDEFINE)
                .ignore(net.bytebuddy.matcher.ElementMatchers.none())
                .type(named("sun.nio.ch.ServerSocketChannelImpl").or(named("java.net.ServerSocket")))
                .transform((builder, type, loader, module, domain) -> builder.visit(
                        Advice.to(OnBind.class).on(named("bind").and(takesArguments(2))
                                .and(takesArgument(0, SocketAddress.class)))))
                .installOn(inst);
    }

    /** Inlined into bind(SocketAddress, int): the address argument is replaced before the bind runs. */
    public static final class OnBind {
        private OnBind() {}

        @Advice.OnMethodEnter
        static void enter(@Advice.This Object self,
                @Advice.Argument(value = 0, readOnly = false, typing = Assigner.Typing.DYNAMIC)
                SocketAddress local) {
            // a null address is "any": for a classic (IP-only) server socket that is the wildcard; an NIO
            // channel may be a UNIX-domain one, whose null bind means an automatic path: left alone
            if (local == null && self instanceof java.net.ServerSocket) {
                local = new InetSocketAddress(InetAddress.getLoopbackAddress(), 0);
            } else if (local instanceof InetSocketAddress) {
                InetSocketAddress inet = (InetSocketAddress) local;
                if (inet.getAddress() != null && inet.getAddress().isAnyLocalAddress()) {
                    local = new InetSocketAddress(InetAddress.getLoopbackAddress(), inet.getPort());
                }
            }
        }
    }
}
