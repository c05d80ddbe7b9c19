from services.pilot.service import PilotService

if __name__ == "__main__":  # the decode worker (multiprocessing "spawn") imports this module again
    PilotService.main()
